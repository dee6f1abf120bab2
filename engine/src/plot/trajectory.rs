//! `plot … = trajectory { samples }`: the reverse chain of a sample stage run with
//! `trajectory = k`. `plot.gif` animates it — each frame shows x_t (top row) and the
//! predicted x̂₀ (bottom row) of the first few samples at one kept step — and `plot.png`
//! is a compact strip: for each of the first three samples a row of x_t and a row of x̂₀,
//! one column per kept step (noise on the left, the final sample on the right).

use std::path::Path;

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame};
use tch::{Kind, Tensor};

use super::grid::{auto_scale, grid_image};
use crate::metrics::trajectory::TRAJECTORY_FILE;
use crate::params::input;

/// Samples shown in the animation.
pub const SHOWN: i64 = 8;
/// Samples in the strip (two rows each): enough to see the process, few enough that a
/// report puts the strips of a sweep side by side.
pub const STRIP_SAMPLES: i64 = 3;

pub use difflow_core::params::plot::TrajectoryParams;

pub fn run(job: &Job, params: &TrajectoryParams, png: &Path, gif: &Path) -> Result<()> {
    let (name, samples) = input(job, &params.samples)?;
    let path = samples.dir.join(TRAJECTORY_FILE);
    if !path.exists() {
        bail!("`{name}` kept no trajectory: set `trajectory = k` in that sample stage to keep every k-th step");
    }
    let file = crate::data::store::TensorFile::read(&path)?;
    let (xt, x0) = (file.take("xt")?, file.take("x0")?);
    if xt.dim() != 5 || xt.kind() != Kind::Uint8 {
        bail!("`{name}` holds vectors, not images; the trajectory plot shows images");
    }
    let (k, n) = (xt.size()[0], xt.size()[1]);
    let shown = SHOWN.min(n);
    let scale = auto_scale(xt.size()[3]);
    let (xt, x0) = (xt.narrow(1, 0, shown), x0.narrow(1, 0, shown));

    // The strip: rows (sample i: x_t, then x̂₀), columns = kept steps.
    let strip_samples = STRIP_SAMPLES.min(shown);
    let rows = Tensor::stack(
        &[xt.narrow(1, 0, strip_samples).transpose(0, 1), x0.narrow(1, 0, strip_samples).transpose(0, 1)],
        1,
    )
    .flatten(0, 1)
    .flatten(0, 1);
    let strip = grid_image(&rows, k as usize, scale)?;
    strip.save(png).with_context(|| format!("cannot write {}", png.display()))?;

    // The animation: one frame per kept step, then a pause on the final sample.
    let file = std::fs::File::create(gif).with_context(|| format!("cannot write {}", gif.display()))?;
    let mut encoder = GifEncoder::new_with_speed(file, 10);
    encoder.set_repeat(Repeat::Infinite)?;
    for step in 0..k {
        let frame = Tensor::cat(&[xt.get(step), x0.get(step)], 0);
        let rgb = grid_image(&frame, shown as usize, scale)?;
        let delay = if step == k - 1 { 1500 } else { 120 };
        let rgba = image::DynamicImage::ImageRgb8(rgb).to_rgba8();
        encoder
            .encode_frame(Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(delay, 1)))
            .with_context(|| format!("cannot write {}", gif.display()))?;
    }
    Ok(())
}
