//! CIFAR-10 in either official form, extracted or still in its `.tar.gz`:
//!
//! - the binary version (`cifar-10-binary.tar.gz` → `cifar-10-batches-bin/`):
//!   `data_batch_1.bin`…`data_batch_5.bin`, `test_batch.bin`, each record one label byte
//!   and 3072 pixel bytes (the R, G and B planes of a 32×32 image);
//! - the python version (`cifar-10-python.tar.gz` → `cifar-10-batches-py/`): `data_batch_1`…
//!   `data_batch_5`, `test_batch`, pickled dicts with `b'data'` (a uint8 numpy array
//!   [10000, 3072], same layout) and `b'labels'` (a list of ints). The engine's bounded
//!   pickle interpreter ([`crate::pickle`]) reads them without running code: numpy arrays
//!   are recognised by their reconstruct/`BUILD` pattern.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;

use super::images::ImageSet;
use super::limits::{read_capped, MAX_DECOMPRESSED};
use crate::pickle::{self, Obj};

const RECORD: usize = 1 + 3072;
const WHERE_TO_GET: &str = "download cifar-10-binary.tar.gz or cifar-10-python.tar.gz from \
     https://www.cs.toronto.edu/~kriz/cifar.html and put the archive (or its extracted folder) there";

pub const CLASS_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

fn batch_names(split: &str) -> Result<Vec<String>> {
    match split {
        "train" => Ok((1..=5).map(|i| format!("data_batch_{i}")).collect()),
        "test" => Ok(vec!["test_batch".into()]),
        other => bail!("`split` must be \"train\" or \"test\", got {other:?}"),
    }
}

/// Where the batches come from: a folder of extracted files, or an archive.
enum Source {
    Folder(PathBuf, bool),
    Archive(PathBuf),
}

fn locate(path: &Path, names: &[String]) -> Result<Source> {
    if path.is_file() {
        return Ok(Source::Archive(path.to_path_buf()));
    }
    if !path.is_dir() {
        bail!("the CIFAR-10 path {} does not exist: {WHERE_TO_GET}", path.display());
    }
    for dir in [path.to_path_buf(), path.join("cifar-10-batches-bin"), path.join("cifar-10-batches-py")] {
        if dir.join(format!("{}.bin", names[0])).is_file() {
            return Ok(Source::Folder(dir, true));
        }
        if dir.join(&names[0]).is_file() {
            return Ok(Source::Folder(dir, false));
        }
    }
    for archive in ["cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"] {
        if path.join(archive).is_file() {
            return Ok(Source::Archive(path.join(archive)));
        }
    }
    bail!(
        "no CIFAR-10 batches in {} (looked for {}.bin or {} there and in cifar-10-batches-bin/ and \
         cifar-10-batches-py/, and for cifar-10-binary.tar.gz / cifar-10-python.tar.gz): {WHERE_TO_GET}",
        path.display(),
        names[0],
        names[0]
    )
}

/// Loads one split; the batches are decoded in parallel.
pub fn load(path: &Path, split: &str) -> Result<ImageSet> {
    let names = batch_names(split)?;
    let batches: Vec<(Vec<u8>, Vec<i64>)> = match locate(path, &names)? {
        Source::Folder(dir, binary) => names
            .par_iter()
            .map(|name| {
                let file = if binary { dir.join(format!("{name}.bin")) } else { dir.join(name) };
                let bytes = read_file_capped(&file).with_context(|| {
                    format!("the CIFAR-10 batch {} is missing or unreadable: {WHERE_TO_GET}", file.display())
                })?;
                decode_batch(&bytes, binary, &file.display().to_string())
            })
            .collect::<Result<_>>()?,
        Source::Archive(archive) => {
            let members = read_archive(&archive, &names)?;
            members
                .par_iter()
                .map(|(name, binary, bytes)| decode_batch(bytes, *binary, &format!("{}:{name}", archive.display())))
                .collect::<Result<_>>()?
        }
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (p, l) in batches {
        pixels.extend_from_slice(&p);
        labels.extend_from_slice(&l);
    }
    Ok(ImageSet {
        count: labels.len(),
        pixels,
        labels,
        channels: 3,
        height: 32,
        width: 32,
        classes: 10,
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
    })
}

/// The wanted batches from a `.tar.gz`, in order, as (name, is_binary, bytes).
fn read_archive(archive: &Path, names: &[String]) -> Result<Vec<(String, bool, Vec<u8>)>> {
    let file = std::fs::File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found: HashMap<String, (bool, Vec<u8>)> = HashMap::new();
    let corrupt = |e: std::io::Error| {
        anyhow!(
            "{} is not a readable .tar.gz ({e}): the download is truncated or corrupt; {WHERE_TO_GET}",
            archive.display()
        )
    };
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let base = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let (stem, binary) = match base.strip_suffix(".bin") {
            Some(stem) => (stem.to_string(), true),
            None => (base.clone(), false),
        };
        if names.contains(&stem) {
            let what = format!("{}:{}", archive.display(), path.display());
            // The tar header declares the member's size: refuse a bomb before inflating it.
            let declared = entry.header().size().map_err(corrupt)?;
            if declared > MAX_DECOMPRESSED {
                bail!(
                    "{what} declares {declared} bytes, more than {} MB: it is not a CIFAR-10 batch; {WHERE_TO_GET}",
                    MAX_DECOMPRESSED >> 20
                );
            }
            let bytes = read_capped(&mut entry, declared, &what).map_err(|e| {
                match e.root_cause().downcast_ref::<std::io::Error>() {
                    Some(io) => corrupt(std::io::Error::new(io.kind(), io.to_string())),
                    None => e,
                }
            })?;
            found.insert(stem, (binary, bytes));
        }
    }
    names
        .iter()
        .map(|name| {
            found.remove(name).map(|(binary, bytes)| (name.clone(), binary, bytes)).ok_or_else(|| {
                anyhow!(
                    "the archive {} has no batch {name}: it is not a CIFAR-10 archive; {WHERE_TO_GET}",
                    archive.display()
                )
            })
        })
        .collect()
}

fn read_file_capped(file: &Path) -> Result<Vec<u8>> {
    let what = file.display().to_string();
    read_capped(std::fs::File::open(file)?, MAX_DECOMPRESSED, &what)
}

fn decode_batch(bytes: &[u8], binary: bool, what: &str) -> Result<(Vec<u8>, Vec<i64>)> {
    if binary {
        decode_binary(bytes, what)
    } else {
        decode_pickle(bytes, what)
    }
}

/// A binary batch: records of one label byte and 3072 pixel bytes.
pub fn decode_binary(bytes: &[u8], what: &str) -> Result<(Vec<u8>, Vec<i64>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        bail!(
            "the CIFAR-10 batch {what} has {} bytes, not a multiple of {RECORD} (one label byte + 3072 pixels): \
             the file is truncated or corrupt; {WHERE_TO_GET}",
            bytes.len()
        );
    }
    let n = bytes.len() / RECORD;
    let mut pixels = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for record in bytes.chunks_exact(RECORD) {
        if record[0] > 9 {
            bail!("the CIFAR-10 batch {what} holds the label {}: labels are 0..9; the file is corrupt", record[0]);
        }
        labels.push(record[0] as i64);
        pixels.extend_from_slice(&record[1..]);
    }
    Ok((pixels, labels))
}

/// A python batch: a pickled dict with `b'data'` [N, 3072] uint8 and `b'labels'`.
pub fn decode_pickle(bytes: &[u8], what: &str) -> Result<(Vec<u8>, Vec<i64>)> {
    let bad = |msg: String| anyhow!("the CIFAR-10 batch {what} {msg}; {WHERE_TO_GET}");
    let (obj, _) = pickle::load(bytes).map_err(|e| bad(format!("is not a readable pickle ({e})")))?;
    let Obj::Dict(dict) = &obj else { return Err(bad("does not hold a dict".into())) };
    let get = |key: &str| dict.iter().find(|(k, _)| as_bytes(k).as_deref() == Some(key.as_bytes())).map(|(_, v)| v);
    let data = get("data").ok_or_else(|| bad("has no `data` entry".into()))?;
    let (shape, raw) =
        as_uint8_array(data).ok_or_else(|| bad("has a `data` entry that is not a uint8 array".into()))?;
    let expected = shape.first().and_then(|n| n.checked_mul(3072));
    if shape.len() != 2 || shape[1] != 3072 || expected != Some(raw.len()) {
        return Err(bad(format!("has `data` of shape {shape:?} with {} bytes, not [N, 3072]", raw.len())));
    }
    let labels = get("labels").ok_or_else(|| bad("has no `labels` entry".into()))?;
    let labels: Vec<i64> = match labels {
        Obj::List(items) => items
            .iter()
            .map(|v| match v {
                Obj::Int(i) if (0..10).contains(i) => Ok(*i),
                other => Err(bad(format!("has a label {} outside 0..9", short_debug(other)))),
            })
            .collect::<Result<_>>()?,
        _ => return Err(bad("has `labels` that are not a list".into())),
    };
    if labels.len() != shape[0] {
        return Err(bad(format!("holds {} images but {} labels", shape[0], labels.len())));
    }
    Ok((raw, labels))
}

/// A value for a message, cut short: a hostile file's value may be megabytes long.
fn short_debug(obj: &Obj) -> String {
    let text = format!("{obj:?}");
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The bytes of a `bytes` value, a Python 2 `str` (read as bytes), or of
/// `_codecs.encode(text, 'latin1')` (how Python 3 writes bytes at protocol 2).
fn as_bytes(obj: &Obj) -> Option<Vec<u8>> {
    match obj {
        Obj::Bytes(b) => Some(b.clone()),
        Obj::Str(s) => Some(s.as_bytes().to_vec()),
        Obj::Call(f, args) => match (&**f, &**args) {
            (Obj::Global(m, n), Obj::Tuple(a)) if m == "_codecs" && n == "encode" => match a.first() {
                Some(Obj::Str(s)) => Some(s.chars().map(|c| c as u32 as u8).collect()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// A numpy uint8 array: `BUILD(_reconstruct(ndarray, …), (version, shape, dtype, fortran,
/// raw))` with a `u1` dtype. Returns (shape, raw bytes).
fn as_uint8_array(obj: &Obj) -> Option<(Vec<usize>, Vec<u8>)> {
    let Obj::Build(target, state) = obj else { return None };
    let Obj::Call(f, _) = &**target else { return None };
    let Obj::Global(module, name) = &**f else { return None };
    if !module.starts_with("numpy") || name != "_reconstruct" {
        return None;
    }
    let Obj::Tuple(state) = &**state else { return None };
    let [_, Obj::Tuple(shape), dtype, fortran, raw] = state.as_slice() else { return None };
    if !is_u1(dtype) || *fortran == Obj::Bool(true) {
        return None;
    }
    let shape: Option<Vec<usize>> =
        shape.iter().map(|d| if let Obj::Int(i) = d { usize::try_from(*i).ok() } else { None }).collect();
    Some((shape?, as_bytes(raw)?))
}

fn is_u1(dtype: &Obj) -> bool {
    let inner = match dtype {
        Obj::Build(d, _) => &**d,
        d => d,
    };
    match inner {
        Obj::Call(f, args) => {
            matches!(&**f, Obj::Global(m, n) if m.starts_with("numpy") && n == "dtype")
                && matches!(&**args, Obj::Tuple(a) if a.first().and_then(as_bytes).as_deref() == Some(b"u1"))
        }
        _ => false,
    }
}
