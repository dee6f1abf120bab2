//! 2-D toy distributions: `moons`, `gaussians8` (eight Gaussians on a circle of radius 2,
//! labelled by mode) and `swissroll`, deterministic in their seed.

use anyhow::{bail, Result};
use tch::Tensor;

use super::store::{DataMeta, DataType, Dataset};
use crate::rng::SplitMix;

/// Radius of the circle that carries the eight modes of `gaussians8`.
pub const GAUSSIANS8_RADIUS: f64 = 2.0;

/// The centres of `gaussians8`'s modes, mode k at angle 2πk/8.
pub fn gaussians8_centres() -> Vec<[f64; 2]> {
    (0..8)
        .map(|k| {
            let a = std::f64::consts::TAU * k as f64 / 8.0;
            [GAUSSIANS8_RADIUS * a.cos(), GAUSSIANS8_RADIUS * a.sin()]
        })
        .collect()
}

pub fn generate(shape: &str, count: usize, noise: f64, seed: u64) -> Result<Dataset> {
    let mut rng = SplitMix::new(seed);
    let mut points = Vec::with_capacity(count * 2);
    let mut labels = Vec::with_capacity(count);
    let classes = match shape {
        "gaussians8" => {
            let centres = gaussians8_centres();
            for i in 0..count {
                let k = i % 8;
                points.push((centres[k][0] + noise * rng.normal()) as f32);
                points.push((centres[k][1] + noise * rng.normal()) as f32);
                labels.push(k as i64);
            }
            8
        }
        "moons" => {
            // Two interleaved half circles (scikit-learn's make_moons), centred and scaled ×1.5.
            for i in 0..count {
                let upper = i % 2 == 0;
                let a = std::f64::consts::PI * rng.uniform();
                let (x, y) = if upper { (a.cos(), a.sin()) } else { (1.0 - a.cos(), 0.5 - a.sin()) };
                points.push((1.5 * (x - 0.5) + noise * rng.normal()) as f32);
                points.push((1.5 * (y - 0.25) + noise * rng.normal()) as f32);
                labels.push(if upper { 0 } else { 1 });
            }
            2
        }
        "swissroll" => {
            // scikit-learn's make_swiss_roll projected on (x, z), scaled to about [-2, 2].
            for _ in 0..count {
                let t = 1.5 * std::f64::consts::PI * (1.0 + 2.0 * rng.uniform());
                points.push((t * t.cos() / 6.0 + noise * rng.normal()) as f32);
                points.push((t * t.sin() / 6.0 + noise * rng.normal()) as f32);
                labels.push(0);
            }
            0
        }
        other => bail!("unknown toy shape `{other}`: use \"moons\", \"gaussians8\" or \"swissroll\""),
    };
    let meta = DataMeta { data_type: DataType::Points, shape: vec![2], classes, count, flip: false };
    Dataset::new(meta, Tensor::from_slice(&points).view([count as i64, 2]), Tensor::from_slice(&labels))
}
