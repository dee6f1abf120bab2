//! Decoded image datasets (what every image loader returns), the resize/pad helpers they
//! share, and the `images` loader: a folder of PNG/JPEG files, class subfolders as labels
//! (sorted by name: label i is the i-th folder); files directly in the folder with no
//! subfolders make an unlabelled set (0 classes).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use rayon::prelude::*;
use tch::Tensor;

use super::split::stratified_split;
use super::store::{DataMeta, DataType, Dataset};

/// Decoded images as uint8 `[N, C, H, W]` (row-major, channel planes) with int labels in
/// `0..classes`. Scaling to [-1, 1] happens at training time.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub labels: Vec<i64>,
    pub count: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// The name of each class (a folder name, a digit, a CIFAR class name).
    pub class_names: Vec<String>,
}

impl ImageSet {
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Keeps the images with labels `0..classes` (the class count becomes `classes`), then
    /// `limit` of those, every class its share ([`stratified_split`]), in their order.
    pub fn select(self, classes: Option<usize>, limit: Option<usize>) -> Result<ImageSet> {
        let n = self.image_len();
        let mut out = ImageSet { pixels: Vec::new(), labels: Vec::new(), count: 0, ..self.clone_header() };
        if let Some(classes) = classes {
            if classes == 0 || classes > self.classes {
                bail!("`classes = {classes}` asks for more classes than the data has ({})", self.classes);
            }
            out.classes = classes;
            out.class_names.truncate(classes);
        }
        let wanted: Vec<usize> =
            (0..self.count).filter(|&i| classes.is_none_or(|c| self.labels[i] < c as i64)).collect();
        let wanted_labels: Vec<i64> = wanted.iter().map(|&i| self.labels[i]).collect();
        let limit = limit.unwrap_or(usize::MAX);
        for k in stratified_split(&wanted_labels, limit).0 {
            let i = wanted[k];
            out.pixels.extend_from_slice(&self.pixels[i * n..(i + 1) * n]);
            out.labels.push(self.labels[i]);
            out.count += 1;
        }
        if out.count == 0 {
            bail!("no images left after keeping {classes:?} classes and {limit} images");
        }
        Ok(out)
    }

    fn clone_header(&self) -> ImageSet {
        ImageSet {
            pixels: Vec::new(),
            labels: Vec::new(),
            count: 0,
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Brings every image to `size`×`size`: larger sizes pad with zeros around the centre
    /// (28 → 32 for MNIST, as is customary), smaller ones resize with a triangle filter
    /// (which widens with the ratio, so downscaling averages rather than aliases).
    pub fn to_size(self, size: usize) -> Result<ImageSet> {
        if size == self.height && size == self.width {
            return Ok(self);
        }
        if size == 0 {
            bail!("`size` must be positive");
        }
        let (c, h, w) = (self.channels, self.height, self.width);
        let n = self.image_len();
        let pixels: Vec<u8> = self
            .pixels
            .par_chunks(n)
            .flat_map_iter(|img| {
                (0..c).flat_map(|ch| resize_plane(&img[ch * h * w..(ch + 1) * h * w], h, w, size)).collect::<Vec<u8>>()
            })
            .collect();
        Ok(ImageSet { pixels, height: size, width: size, ..self })
    }
}

/// One channel plane `h`×`w` to `size`×`size` (pad when both sides fit, else resize).
fn resize_plane(plane: &[u8], h: usize, w: usize, size: usize) -> Vec<u8> {
    if size >= h && size >= w {
        let (top, left) = ((size - h) / 2, (size - w) / 2);
        let mut out = vec![0u8; size * size];
        for y in 0..h {
            out[(top + y) * size + left..(top + y) * size + left + w].copy_from_slice(&plane[y * w..(y + 1) * w]);
        }
        out
    } else {
        let img = image::GrayImage::from_raw(w as u32, h as u32, plane.to_vec()).expect("plane has h·w bytes");
        image::imageops::resize(&img, size as u32, size as u32, FilterType::Triangle).into_raw()
    }
}

/// Loads a folder of PNG/JPEG images: class subfolders (sorted by name) give the labels;
/// images directly in the folder, with no subfolders, are one class. With `size`, every
/// image is resized so that its shorter side is `size` and centre-cropped to
/// `size`×`size`; without, the images keep their own size, which must be the same for
/// all. Each is converted to `channels` (1: luma, 3: RGB).
pub fn load_folder(path: &Path, size: Option<usize>, channels: usize, limit: Option<usize>) -> Result<ImageSet> {
    if !path.is_dir() {
        bail!(
            "the image folder {} does not exist: point `path` at a folder of PNG/JPEG files \
             (one subfolder per class)",
            path.display()
        );
    }
    if channels != 1 && channels != 3 {
        bail!("`channels` must be 1 (grayscale) or 3 (RGB), got {channels}");
    }
    if size == Some(0) {
        bail!("`size` must be positive");
    }
    let mut class_dirs: Vec<PathBuf> = read_dir_sorted(path)?.into_iter().filter(|p| p.is_dir()).collect();
    let class_names: Vec<String> =
        class_dirs.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    // No class subfolders: one unlabelled set (0 classes, labels all 0).
    let labelled = !class_dirs.is_empty();
    if !labelled {
        class_dirs.push(path.to_path_buf());
    }
    let mut files: Vec<(PathBuf, i64)> = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        for file in read_dir_sorted(dir)? {
            if is_image_file(&file) {
                files.push((file, label as i64));
            }
        }
    }
    if files.is_empty() {
        bail!(
            "the image folder {} holds no PNG or JPEG files (looked in {} folder(s)): put the images there, \
             one subfolder per class",
            path.display(),
            class_dirs.len()
        );
    }
    // `limit` keeps every class's share of the files (in class, then name order) and
    // decodes only those.
    if let Some(limit) = limit {
        let labels: Vec<i64> = files.iter().map(|(_, label)| *label).collect();
        let kept = stratified_split(&labels, limit).0;
        files = kept.into_iter().map(|i| files[i].clone()).collect();
    }
    let decoded: Vec<(usize, usize, Vec<u8>)> =
        files.par_iter().map(|(file, _)| decode_file(file, size, channels)).collect::<Result<Vec<_>>>()?;
    let (height, width) = (decoded[0].0, decoded[0].1);
    if let Some(i) = decoded.iter().position(|(h, w, _)| (*h, *w) != (height, width)) {
        bail!(
            "the images in {} have different sizes: {} is {width}×{height}, {} is {}×{}: set `size` to bring \
             them all to size × size",
            path.display(),
            files[0].0.display(),
            files[i].0.display(),
            decoded[i].1,
            decoded[i].0
        );
    }
    let pixels = decoded.into_iter().flat_map(|(_, _, px)| px).collect();
    Ok(ImageSet {
        count: files.len(),
        labels: files.iter().map(|(_, l)| *l).collect(),
        pixels,
        channels,
        height,
        width,
        classes: if labelled { class_dirs.len() } else { 0 },
        class_names,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list the folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    Ok(entries)
}

fn is_image_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .map(|e| matches!(e.to_string_lossy().to_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            .unwrap_or(false)
}

/// The largest width or height an image file may declare.
const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most bytes the decoder may allocate for one image.
const MAX_IMAGE_ALLOC: u64 = 256 << 20;
/// The most elongated image: scaling its short side to `size` keeps the long side bounded.
const MAX_ASPECT: u32 = 16;

/// Decodes one file to `channels` planes (channel-first) of `size`×`size`, or of its own
/// size without `size`: (height, width, pixels).
fn decode_file(file: &Path, size: Option<usize>, channels: usize) -> Result<(usize, usize, Vec<u8>)> {
    let mut reader = image::ImageReader::open(file)
        .with_context(|| format!("cannot open the image {}", file.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read the image {}", file.display()))?;
    // A small file may declare a huge image: the decoder refuses to allocate past these.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let img = reader.decode().with_context(|| {
        format!("the image {} is corrupt, too large or not a PNG/JPEG: replace or remove it", file.display())
    })?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 || w.max(h) / w.min(h) > MAX_ASPECT {
        bail!(
            "the image {} is {w}×{h} pixels: images wider or taller than {MAX_ASPECT}:1 are not supported",
            file.display()
        );
    }
    let img = match size {
        Some(size) => resize_and_crop(img, size as u32),
        None => img,
    };
    let (height, width) = (img.height() as usize, img.width() as usize);
    let hw = height * width;
    let mut out = vec![0u8; channels * hw];
    if channels == 1 {
        out.copy_from_slice(img.to_luma8().as_raw());
    } else {
        for (i, px) in img.to_rgb8().pixels().enumerate() {
            for c in 0..3 {
                out[c * hw + i] = px.0[c];
            }
        }
    }
    Ok((height, width, out))
}

/// Shorter side to `size` (triangle filter), then the centre `size`×`size`.
fn resize_and_crop(img: image::DynamicImage, size: u32) -> image::DynamicImage {
    let (w, h) = (img.width(), img.height());
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = (((w as f64 * scale).round() as u32).max(size), ((h as f64 * scale).round() as u32).max(size));
    let img = if (nw, nh) == (w, h) { img } else { img.resize_exact(nw, nh, FilterType::Triangle) };
    img.crop_imm((nw - size) / 2, (nh - size) / 2, size, size)
}

impl ImageSet {
    /// The dataset artifact of these images (`flip`: training may flip them horizontally).
    pub fn into_dataset(self, flip: bool) -> Result<Dataset> {
        let shape = [self.count as i64, self.channels as i64, self.height as i64, self.width as i64];
        let values = Tensor::from_slice(&self.pixels).reshape(shape);
        let labels = Tensor::from_slice(&self.labels);
        let meta = DataMeta {
            data_type: DataType::Images,
            shape: shape[1..].to_vec(),
            classes: self.classes,
            count: self.count,
            flip,
        };
        Dataset::new(meta, values, labels)
    }
}

pub use difflow_core::params::dataset::ImagesParams;

/// The `images` dataset stage.
pub fn from_params(p: &ImagesParams) -> Result<Dataset> {
    load_folder(&p.path, p.size, p.channels, p.limit)?.into_dataset(false)
}
