//! Image grids: the `grid` plot variant (images of a dataset or sample stage, one column
//! per class with its label above when they have classes) and the in-memory grid that the
//! forward and trajectory plots build on.

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use tch::{Device, Kind, Tensor};

use crate::data::Dataset;

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

/// Class-labelled images are laid out by class only with at most this many classes (more
/// columns would be too narrow to read).
const MAX_CLASS_COLUMNS: usize = 20;

pub use difflow_core::params::plot::GridParams;

pub fn run(job: &Job, params: &GridParams, out: &std::path::Path) -> Result<()> {
    let (name, of) = input(job, &params.of)?;
    let data = Dataset::read(&of.dir).with_context(|| format!("cannot read the images of `{name}`"))?;
    if !data.meta.is_images() {
        bail!("`{name}` holds vectors of shape {:?}; a grid shows images (use a scatter plot)", data.meta.shape);
    }
    let count = params.count.clamp(1, data.meta.count.max(1)) as i64;
    let scale = auto_scale(data.meta.shape[1]);
    let labels: Vec<i64> = Vec::try_from(data.labels.to_kind(Kind::Int64).flatten(0, -1))?;
    let img = match class_grid(&data.values, &labels, count as usize, scale)? {
        Some(img) => img,
        None => {
            let shown = data.values.narrow(0, 0, count.min(data.values.size()[0]));
            grid_image(&shown, (count as f64).sqrt().ceil() as usize, scale)?
        }
    };
    img.save(out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// About `count` images in one column per class, the first ones of each class top down,
/// under a band with each column's class label; `None` unless 2 to [`MAX_CLASS_COLUMNS`]
/// classes occur.
pub fn class_grid(images: &Tensor, labels: &[i64], count: usize, scale: usize) -> Result<Option<image::RgbImage>> {
    let mut classes: Vec<i64> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    if !(2..=MAX_CLASS_COLUMNS).contains(&classes.len()) || labels.len() as i64 != images.size()[0] {
        return Ok(None);
    }
    let per_class = count.div_ceil(classes.len());
    // Column-major order (class by class) becomes row-major through a transpose of indices.
    let columns: Vec<Vec<i64>> = classes
        .iter()
        .map(|c| (0..labels.len() as i64).filter(|&i| labels[i as usize] == *c).take(per_class).collect())
        .collect();
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0);
    let blank = images.get(0).full_like(255);
    let mut cells = Vec::with_capacity(rows * columns.len());
    for row in 0..rows {
        for column in &columns {
            cells.push(column.get(row).map_or_else(|| blank.shallow_clone(), |&i| images.get(i)));
        }
    }
    let grid = grid_image(&Tensor::stack(&cells, 0), columns.len(), scale)?;
    let cell_width = (grid.width() as usize - 2) / columns.len();
    let names: Vec<String> = classes.iter().map(i64::to_string).collect();
    Ok(Some(with_column_labels(&grid, &names, cell_width)?))
}

/// `grid` under a white band with `labels[i]` centred over its i-th column of `cell_width`
/// pixels (gutter included), in a font most of a cell high so that it stays legible when
/// a report shows the grids of a sweep side by side, each a fifth of the page wide.
fn with_column_labels(grid: &image::RgbImage, labels: &[String], cell_width: usize) -> Result<image::RgbImage> {
    use plotters::prelude::{BitMapBackend, IntoDrawingArea, IntoFont, BLACK};
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let font_size = (cell_width as f64 * 0.8).clamp(10.0, 56.0);
    let band = (font_size * 1.2).ceil() as u32;
    let mut canvas = image::RgbImage::from_pixel(grid.width(), grid.height() + band, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, grid, 0, i64::from(band));
    {
        let (w, h) = canvas.dimensions();
        let area = BitMapBackend::with_buffer(&mut canvas, (w, h)).into_drawing_area();
        let style = ("sans-serif", font_size).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
        for (i, label) in labels.iter().enumerate() {
            let x = 2 + i * cell_width + cell_width / 2;
            area.draw_text(label, &style, (x as i32, band as i32 / 2))
                .map_err(|e| anyhow::anyhow!("cannot draw the class labels: {e}"))?;
        }
        area.present().map_err(|e| anyhow::anyhow!("cannot draw the class labels: {e}"))?;
    }
    Ok(canvas)
}

/// Creates the folder a plot goes into.
pub fn create_parent(path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_grid_has_a_labelled_column_per_class() {
        // 8×8 images whose grey level is 40 × their class; classes cycled 0, 1, 2.
        let labels: Vec<i64> = (0..12).map(|i| i % 3).collect();
        let levels: Vec<u8> = labels.iter().map(|&c| 40 * c as u8 + 20).collect();
        let images = Tensor::from_slice(&levels).view([12, 1, 1, 1]).expand([12, 1, 8, 8], false).contiguous();
        let img = class_grid(&images, &labels, 6, 1).unwrap().expect("three classes get columns");
        let cell = 8 + 2;
        assert_eq!(img.width() as usize, 3 * cell + 2, "one column per class");
        let band = img.height() as usize - (2 * cell + 2);
        assert!(band >= 10, "a band for the labels above two rows of 6 / 3 images");
        for class in 0..3usize {
            let x0 = 2 + class * cell;
            // Every image of the column is of its class.
            for row in 0..2 {
                let px = img.get_pixel((x0 + 4) as u32, (band + 2 + row * cell + 4) as u32);
                assert_eq!(px.0[0], 40 * class as u8 + 20, "class {class}, row {row}");
            }
            // Its label is drawn (dark pixels) in the band above it.
            let inked = (x0..x0 + cell).flat_map(|x| (0..band).map(move |y| (x, y)));
            let dark = inked.filter(|&(x, y)| img.get_pixel(x as u32, y as u32).0[0] < 128).count();
            assert!(dark > 0, "no label above class {class}");
        }
        let one_class = vec![0i64; 12];
        assert!(class_grid(&images, &one_class, 6, 1).unwrap().is_none(), "one class is no column layout");
    }
}
