//! Plot writers (PNG via plotters / image).

pub mod curve;
pub mod forward;
pub mod grid;
pub mod loss;
pub mod scatter;
pub mod schedules;
pub mod trajectory;

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// Writes uint8 images [N, C, H, W] (C = 1 or 3) as one PNG grid of `columns` columns with a
/// 2-pixel white gutter.
pub fn write_image_grid(images: &Tensor, columns: usize, path: &Path) -> Result<()> {
    let size = images.size();
    if size.len() != 4 || !(size[1] == 1 || size[1] == 3) {
        bail!("an image grid needs uint8 images [N, 1|3, H, W], got {size:?}");
    }
    let (n, c, h, w) = (size[0] as usize, size[1] as usize, size[2] as usize, size[3] as usize);
    if n == 0 {
        bail!("no images to put in a grid");
    }
    let columns = columns.clamp(1, n);
    let rows = n.div_ceil(columns);
    let gap = 2;
    let (width, height) = (columns * (w + gap) + gap, rows * (h + gap) + gap);
    let pixels: Vec<u8> = Vec::try_from(
        images.to_device(Device::Cpu).to_kind(Kind::Uint8).permute([0, 2, 3, 1]).contiguous().flatten(0, -1),
    )?;
    let mut canvas = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let (ox, oy) = (gap + (i % columns) * (w + gap), gap + (i / columns) * (h + gap));
        for y in 0..h {
            for x in 0..w {
                let base = ((i * h + y) * w + x) * c;
                let rgb = if c == 1 { [pixels[base]; 3] } else { [pixels[base], pixels[base + 1], pixels[base + 2]] };
                canvas.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(rgb));
            }
        }
    }
    canvas.save(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
