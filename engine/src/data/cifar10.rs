//! CIFAR-10 in either official form, extracted or still in its `.tar.gz`:
//!
//! - the binary version (`cifar-10-binary.tar.gz` → `cifar-10-batches-bin/`):
//!   `data_batch_1.bin`…`data_batch_5.bin`, `test_batch.bin`, each record one label byte
//!   and 3072 pixel bytes (the R, G and B planes of a 32×32 image);
//! - the python version (`cifar-10-python.tar.gz` → `cifar-10-batches-py/`): `data_batch_1`…
//!   `data_batch_5`, `test_batch`, pickled dicts with `b'data'` (a uint8 numpy array
//!   [10000, 3072], same layout) and `b'labels'` (a list of ints). We read the pickle with
//!   a small interpreter of the opcodes these files use (protocols 0–4), never running
//!   code: numpy arrays are recognised by their reconstruct/`BUILD` pattern.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;

use super::images::ImageSet;

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
                let bytes = std::fs::read(&file).with_context(|| {
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
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(corrupt)?;
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
    let obj = pickle::load(bytes).map_err(|e| bad(format!("is not a readable pickle ({e})")))?;
    let dict = match &obj {
        pickle::Obj::Dict(d) => d,
        _ => return Err(bad("does not hold a dict".into())),
    };
    let get = |key: &str| dict.iter().find(|(k, _)| k.as_bytes().as_deref() == Some(key.as_bytes())).map(|(_, v)| v);
    let data = get("data").ok_or_else(|| bad("has no `data` entry".into()))?;
    let (shape, raw) =
        data.as_uint8_array().ok_or_else(|| bad("has a `data` entry that is not a uint8 array".into()))?;
    if shape.len() != 2 || shape[1] != 3072 || raw.len() != shape[0] * 3072 {
        return Err(bad(format!("has `data` of shape {shape:?} with {} bytes, not [N, 3072]", raw.len())));
    }
    let labels = get("labels").ok_or_else(|| bad("has no `labels` entry".into()))?;
    let labels: Vec<i64> = match labels {
        pickle::Obj::List(items) => items
            .iter()
            .map(|v| match v {
                pickle::Obj::Int(i) if (0..10).contains(i) => Ok(*i),
                other => Err(bad(format!("has a label {other:?} outside 0..9"))),
            })
            .collect::<Result<_>>()?,
        _ => return Err(bad("has `labels` that are not a list".into())),
    };
    if labels.len() != shape[0] {
        return Err(bad(format!("holds {} images but {} labels", shape[0], labels.len())));
    }
    Ok((raw.to_vec(), labels))
}

/// A minimal, safe pickle reader: builds a tree of plain values, recording calls of
/// globals instead of running them.
pub mod pickle {
    use anyhow::{bail, Result};

    #[derive(Debug, Clone, PartialEq)]
    pub enum Obj {
        None,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        Bytes(Vec<u8>),
        List(Vec<Obj>),
        Tuple(Vec<Obj>),
        Dict(Vec<(Obj, Obj)>),
        Global(String, String),
        /// `callable(*args)`, not run.
        Call(Box<Obj>, Box<Obj>),
        /// `obj.__setstate__(state)`, not run.
        Build(Box<Obj>, Box<Obj>),
        Mark,
    }

    impl Obj {
        /// The bytes of a `bytes` value, a Python 2 `str` (read as bytes), or of
        /// `_codecs.encode(text, 'latin1')` (how Python 3 writes bytes at protocol 2).
        pub fn as_bytes(&self) -> Option<Vec<u8>> {
            match self {
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

        /// A numpy uint8 array: `BUILD(_reconstruct(ndarray, …), (version, shape, dtype,
        /// fortran, raw))` with a `u1` dtype. Returns (shape, raw bytes).
        pub fn as_uint8_array(&self) -> Option<(Vec<usize>, Vec<u8>)> {
            let Obj::Build(target, state) = self else { return None };
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
            Some((shape?, raw.as_bytes()?))
        }
    }

    fn is_u1(dtype: &Obj) -> bool {
        let inner = match dtype {
            Obj::Build(d, _) => &**d,
            d => d,
        };
        match inner {
            Obj::Call(f, args) => {
                matches!(&**f, Obj::Global(m, n) if m.starts_with("numpy") && n == "dtype")
                    && matches!(&**args, Obj::Tuple(a) if a.first().and_then(Obj::as_bytes).as_deref() == Some(b"u1"))
            }
            _ => false,
        }
    }

    struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8]> {
            if self.pos + n > self.bytes.len() {
                bail!("truncated at byte {} (wanted {n} more bytes)", self.pos);
            }
            let s = &self.bytes[self.pos..self.pos + n];
            self.pos += n;
            Ok(s)
        }
        fn u8(&mut self) -> Result<u8> {
            Ok(self.take(1)?[0])
        }
        fn u16(&mut self) -> Result<usize> {
            Ok(u16::from_le_bytes(self.take(2)?.try_into()?) as usize)
        }
        fn u32(&mut self) -> Result<usize> {
            Ok(u32::from_le_bytes(self.take(4)?.try_into()?) as usize)
        }
        fn u64(&mut self) -> Result<usize> {
            Ok(u64::from_le_bytes(self.take(8)?.try_into()?) as usize)
        }
        fn line(&mut self) -> Result<String> {
            let start = self.pos;
            while self.u8()? != b'\n' {}
            Ok(String::from_utf8_lossy(&self.bytes[start..self.pos - 1]).into_owned())
        }
    }

    fn pop_mark(stack: &mut Vec<Obj>) -> Result<Vec<Obj>> {
        let at = stack.iter().rposition(|o| *o == Obj::Mark).ok_or_else(|| anyhow::anyhow!("no MARK on the stack"))?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items)
    }

    fn pop(stack: &mut Vec<Obj>) -> Result<Obj> {
        stack.pop().ok_or_else(|| anyhow::anyhow!("stack underflow"))
    }

    fn utf8(b: &[u8]) -> Result<String> {
        Ok(String::from_utf8(b.to_vec())?)
    }

    /// Interprets a pickle up to STOP and returns the top object.
    pub fn load(bytes: &[u8]) -> Result<Obj> {
        let mut r = Reader { bytes, pos: 0 };
        let mut stack: Vec<Obj> = Vec::new();
        let mut memo: std::collections::HashMap<usize, Obj> = std::collections::HashMap::new();
        loop {
            let op = r.u8()?;
            match op {
                0x80 => {
                    r.u8()?;
                } // PROTO
                0x95 => {
                    r.u64()?;
                } // FRAME
                b'.' => return pop(&mut stack), // STOP
                b'(' => stack.push(Obj::Mark),
                b'N' => stack.push(Obj::None),
                0x88 => stack.push(Obj::Bool(true)),
                0x89 => stack.push(Obj::Bool(false)),
                b'J' => stack.push(Obj::Int(i32::from_le_bytes(r.take(4)?.try_into()?) as i64)),
                b'K' => stack.push(Obj::Int(r.u8()? as i64)),
                b'M' => stack.push(Obj::Int(r.u16()? as i64)),
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = r.u8()? as usize;
                    let b = r.take(n)?;
                    if n > 8 {
                        bail!("integer of {n} bytes is too large");
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    stack.push(Obj::Int(v));
                }
                b'I' => {
                    let line = r.line()?;
                    stack.push(match line.as_str() {
                        "01" => Obj::Bool(true),
                        "00" => Obj::Bool(false),
                        s => Obj::Int(s.parse()?),
                    });
                }
                b'L' => stack.push(Obj::Int(r.line()?.trim_end_matches('L').parse()?)),
                b'G' => stack.push(Obj::Float(f64::from_be_bytes(r.take(8)?.try_into()?))),
                b'U' => {
                    // SHORT_BINSTRING (Python 2 str): bytes.
                    let n = r.u8()? as usize;
                    stack.push(Obj::Bytes(r.take(n)?.to_vec()));
                }
                b'T' => {
                    let n = r.u32()?;
                    stack.push(Obj::Bytes(r.take(n)?.to_vec()));
                }
                b'C' => {
                    let n = r.u8()? as usize;
                    stack.push(Obj::Bytes(r.take(n)?.to_vec()));
                }
                b'B' => {
                    let n = r.u32()?;
                    stack.push(Obj::Bytes(r.take(n)?.to_vec()));
                }
                0x8e => {
                    let n = r.u64()?;
                    stack.push(Obj::Bytes(r.take(n)?.to_vec()));
                }
                0x96 => {
                    let n = r.u64()?;
                    stack.push(Obj::Bytes(r.take(n)?.to_vec()));
                } // BYTEARRAY8
                b'X' => {
                    let n = r.u32()?;
                    stack.push(Obj::Str(utf8(r.take(n)?)?));
                }
                0x8c => {
                    let n = r.u8()? as usize;
                    stack.push(Obj::Str(utf8(r.take(n)?)?));
                }
                0x8d => {
                    let n = r.u64()?;
                    stack.push(Obj::Str(utf8(r.take(n)?)?));
                }
                b'}' => stack.push(Obj::Dict(Vec::new())),
                b']' => stack.push(Obj::List(Vec::new())),
                b')' => stack.push(Obj::Tuple(Vec::new())),
                b'd' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Obj::Dict(pairs(items)?));
                }
                b'l' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Obj::List(items));
                }
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Obj::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        bail!("stack underflow");
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Obj::Tuple(items));
                }
                b's' => {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    match stack.last_mut() {
                        Some(Obj::Dict(d)) => d.push((k, v)),
                        _ => bail!("SETITEM on a non-dict"),
                    }
                }
                b'u' => {
                    let items = pop_mark(&mut stack)?;
                    let new = pairs(items)?;
                    match stack.last_mut() {
                        Some(Obj::Dict(d)) => d.extend(new),
                        _ => bail!("SETITEMS on a non-dict"),
                    }
                }
                b'a' => {
                    let v = pop(&mut stack)?;
                    match stack.last_mut() {
                        Some(Obj::List(l)) => l.push(v),
                        _ => bail!("APPEND on a non-list"),
                    }
                }
                b'e' => {
                    let items = pop_mark(&mut stack)?;
                    match stack.last_mut() {
                        Some(Obj::List(l)) => l.extend(items),
                        _ => bail!("APPENDS on a non-list"),
                    }
                }
                b'c' => {
                    let module = r.line()?;
                    let name = r.line()?;
                    stack.push(Obj::Global(module, name));
                }
                0x93 => {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    match (module, name) {
                        (Obj::Str(m), Obj::Str(n)) => stack.push(Obj::Global(m, n)),
                        _ => bail!("STACK_GLOBAL without strings"),
                    }
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ
                    let args = pop(&mut stack)?;
                    let f = pop(&mut stack)?;
                    stack.push(Obj::Call(Box::new(f), Box::new(args)));
                }
                b'b' => {
                    let state = pop(&mut stack)?;
                    let obj = pop(&mut stack)?;
                    stack.push(Obj::Build(Box::new(obj), Box::new(state)));
                }
                b'q' => {
                    let i = r.u8()? as usize;
                    memo.insert(i, stack.last().cloned().unwrap_or(Obj::None));
                }
                b'r' => {
                    let i = r.u32()?;
                    memo.insert(i, stack.last().cloned().unwrap_or(Obj::None));
                }
                0x94 => {
                    let i = memo.len();
                    memo.insert(i, stack.last().cloned().unwrap_or(Obj::None));
                }
                b'p' => {
                    let i: usize = r.line()?.parse()?;
                    memo.insert(i, stack.last().cloned().unwrap_or(Obj::None));
                }
                b'h' | b'j' | b'g' => {
                    let i = match op {
                        b'h' => r.u8()? as usize,
                        b'j' => r.u32()?,
                        _ => r.line()?.parse()?,
                    };
                    stack.push(memo.get(&i).cloned().ok_or_else(|| anyhow::anyhow!("memo {i} is not set"))?);
                }
                b'0' => {
                    pop(&mut stack)?;
                }
                other => bail!("unsupported pickle opcode 0x{other:02x} at byte {}", r.pos - 1),
            }
        }
    }

    fn pairs(items: Vec<Obj>) -> Result<Vec<(Obj, Obj)>> {
        if !items.len().is_multiple_of(2) {
            bail!("odd number of items for a dict");
        }
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }
}
