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
use plotters::style::RGBColor;
use tch::Tensor;

/// The line and point colours of every plot, in order (matplotlib's tab10, first eight).
pub const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Writes uint8 images [N, C, H, W] (C = 1 or 3) as one PNG grid of `columns` columns with a
/// 2-pixel white gutter, at their own size.
pub fn write_image_grid(images: &Tensor, columns: usize, path: &Path) -> Result<()> {
    grid::grid_image(images, columns, 1)?.save(path).with_context(|| format!("cannot write {}", path.display()))
}
