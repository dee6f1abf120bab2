//! Image grids: the `grid` plot variant (the first `count` images of a dataset or sample
//! stage) and the in-memory grid that the forward and trajectory plots build on.

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use tch::{Device, Kind, Tensor};

use crate::data::Dataset;
use difflow_core::job::StageRef;
use serde::Deserialize;

use crate::params::input;

/// uint8 images [N, C, H, W] (C = 1 or 3) as one RGB image of `columns` columns, each image
/// magnified `scale`× (nearest), with a 2-pixel white gutter.
pub fn grid_image(images: &Tensor, columns: usize, scale: usize) -> Result<image::RgbImage> {
    let size = images.size();
    if size.len() != 4 || !(size[1] == 1 || size[1] == 3) {
        bail!("an image grid needs uint8 images [N, 1|3, H, W], got {size:?}");
    }
    let (n, c, h, w) = (size[0] as usize, size[1] as usize, size[2] as usize, size[3] as usize);
    if n == 0 {
        bail!("no images to put in a grid");
    }
    let scale = scale.max(1);
    let columns = columns.clamp(1, n);
    let rows = n.div_ceil(columns);
    let gap = 2;
    let (cw, ch) = (w * scale, h * scale);
    let (width, height) = (columns * (cw + gap) + gap, rows * (ch + gap) + gap);
    let pixels: Vec<u8> = Vec::try_from(
        images.to_device(Device::Cpu).to_kind(Kind::Uint8).permute([0, 2, 3, 1]).contiguous().flatten(0, -1),
    )?;
    let mut canvas = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let (ox, oy) = (gap + (i % columns) * (cw + gap), gap + (i / columns) * (ch + gap));
        for y in 0..ch {
            for x in 0..cw {
                let base = ((i * h + y / scale) * w + x / scale) * c;
                let rgb = if c == 1 { [pixels[base]; 3] } else { [pixels[base], pixels[base + 1], pixels[base + 2]] };
                canvas.put_pixel((ox + x) as u32, (oy + y) as u32, image::Rgb(rgb));
            }
        }
    }
    Ok(canvas)
}

/// A magnification that brings small images (MNIST's 28 px) to a viewable size.
pub fn auto_scale(side: i64) -> usize {
    (64 / side.max(1)).clamp(1, 4) as usize
}

/// `plot … = grid { of = a sample or dataset stage, count = 64 }`: the first `count`
/// images in a square-ish grid.
#[derive(Debug, Clone, Deserialize)]
pub struct GridParams {
    pub of: StageRef,
    pub count: usize,
}

pub fn run(job: &Job, params: &GridParams, out: &std::path::Path) -> Result<()> {
    let (name, of) = input(job, &params.of)?;
    let data = Dataset::read(&of.dir).with_context(|| format!("cannot read the images of `{name}`"))?;
    if !data.meta.is_images() {
        bail!("`{name}` holds vectors of shape {:?}; a grid shows images (use a scatter plot)", data.meta.shape);
    }
    let count = params.count.clamp(1, data.meta.count.max(1)) as i64;
    let shown = data.values.narrow(0, 0, count.min(data.values.size()[0]));
    let columns = (count as f64).sqrt().ceil() as usize;
    let img = grid_image(&shown, columns, auto_scale(data.meta.shape[1]))?;
    img.save(out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Creates the folder a plot goes into.
pub fn create_parent(path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}
