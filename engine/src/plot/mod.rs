//! Plot writers (PNG via plotters / image).

pub mod curve;
pub mod forward;
pub mod grid;
pub mod loss;
pub mod scatter;
pub mod schedules;
pub mod trajectory;

use std::path::Path;

use anyhow::{Context, Result};
use tch::Tensor;

/// Writes uint8 images [N, C, H, W] (C = 1 or 3) as one PNG grid of `columns` columns with a
/// 2-pixel white gutter, at their own size.
pub fn write_image_grid(images: &Tensor, columns: usize, path: &Path) -> Result<()> {
    grid::grid_image(images, columns, 1)?.save(path).with_context(|| format!("cannot write {}", path.display()))
}
