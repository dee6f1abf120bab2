//! Counter-based noise: the Gaussian noise of sample `i` at step `k` is a pure function of
//! (stage seed, i, k), generated on the CPU. Samples therefore do not depend on the
//! sampling batch size, the batch order or the device.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// SplitMix64 (Steele et al. 2014): a fast, well-mixed 64-bit generator, also used as a hash.
#[derive(Debug, Clone)]
pub struct SplitMix {
    state: u64,
}

pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from several words (order matters).
pub fn derive_seed(words: &[u64]) -> u64 {
    words.iter().fold(0x5EED_D1FF_F10A_u64, |acc, &w| mix64(acc ^ mix64(w)))
}

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix { state: mix64(seed) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn fill_normal(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let u1 = self.uniform();
            let u2 = self.uniform();
            let r = (-2.0 * u1.ln()).sqrt();
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            pair[0] = (r * c) as f32;
            if pair.len() > 1 {
                pair[1] = (r * s) as f32;
            }
        }
    }
}

/// Per-sample noise for a stage: sample `index` at `stream` (a step number, or one of the
/// named streams below) always gets the same values.
#[derive(Debug, Clone, Copy)]
pub struct SampleNoise {
    pub seed: u64,
}

/// The stream of the initial x_T.
pub const STREAM_INIT: u64 = u64::MAX;

impl SampleNoise {
    /// Standard normal noise [indices.len(), shape…] as float32 on `device`.
    pub fn normal(&self, indices: &[u64], stream: u64, shape: &[i64], device: Device) -> Tensor {
        let per: usize = shape.iter().product::<i64>() as usize;
        let mut values = vec![0f32; indices.len() * per];
        values
            .par_chunks_mut(per.max(1))
            .zip(indices.par_iter())
            .for_each(|(chunk, &i)| SplitMix::new(derive_seed(&[self.seed, i, stream])).fill_normal(chunk));
        let mut full = vec![indices.len() as i64];
        full.extend_from_slice(shape);
        Tensor::from_slice(&values).view(full.as_slice()).to_device(device).to_kind(Kind::Float)
    }
}
