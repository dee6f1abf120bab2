//! Reads a PyTorch state dict saved by `torch.save` (a `.pth`/`.pt` file), without Python.
//!
//! libtorch's C++ loaders only read TorchScript archives, so this module implements the
//! small part of pickle that `torch.save(state_dict)` uses, for both file formats:
//! - the zip format (torch >= 1.6): `<prefix>/data.pkl` plus one `<prefix>/data/<key>` file
//!   per storage;
//! - the legacy format (how `pt_inception-2015-12-05-6726825d.pth` was saved): a magic-number
//!   pickle, a protocol-version pickle, a system-info pickle, the object pickle, a pickle of
//!   the storage keys, then each storage as `u64 element count` + raw little-endian bytes.
//!
//! Tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` calls
//! whose storage is a persistent id `('storage', torch.FloatStorage, key, location, numel…)`.
//! The pickles are read by the engine's bounded interpreter ([`crate::pickle`]); sizes the
//! file declares (zip entries, storages, tensor shapes) are checked against its length.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Kind, Tensor};

use crate::pickle::{self, Obj};

#[derive(Debug, Clone)]
struct TensorRef {
    storage_key: String,
    kind: Kind,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

/// Loads every tensor of a `torch.save`d state dict (nested dicts are flattened with `.`).
pub fn load_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"PK\x03\x04") {
        load_zip(&bytes).with_context(|| format!("{} is not a readable torch.save zip file", path.display()))
    } else {
        load_legacy(&bytes).with_context(|| format!("{} is not a readable torch.save file", path.display()))
    }
}

fn load_zip(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let pickle_name = archive
        .file_names()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no data.pkl in the archive"))?;
    let prefix = pickle_name.strip_suffix("data.pkl").unwrap_or("").to_string();
    // Torch stores entries uncompressed: all of them together never exceed the archive.
    let mut allowance = bytes.len() as u64;
    let pickle = read_entry(&mut archive, &pickle_name, &mut allowance)?;
    let (root, _) = pickle::load(&pickle)?;
    let mut tensors = Vec::new();
    flatten(&root, "", &mut tensors)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !storages.contains_key(&t.storage_key) {
            let data = read_entry(&mut archive, &format!("{prefix}data/{}", t.storage_key), &mut allowance)?;
            storages.insert(t.storage_key.clone(), data);
        }
        out.push((name, materialise(&t, &storages[&t.storage_key])?));
    }
    Ok(out)
}

/// One archive entry, read without trusting its declared size: reading stops with an error
/// once the entries read so far exceed `allowance` bytes.
fn read_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str, allowance: &mut u64) -> Result<Vec<u8>> {
    let file = archive.by_name(name).with_context(|| format!("no {name} in the archive"))?;
    let mut data = Vec::new();
    file.take(*allowance + 1).read_to_end(&mut data)?;
    if data.len() as u64 > *allowance {
        bail!("the entry {name} holds more data than the whole archive (a compressed or forged entry)");
    }
    *allowance -= data.len() as u64;
    Ok(data)
}

const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

fn load_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let (magic, used) = pickle::load(bytes).context("not a pickle")?;
    let Obj::BigInt(b) = &magic else { bail!("not a torch.save file (no magic number)") };
    let mut le = [0u8; 16];
    le[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
    if b.len() > 16 || u128::from_le_bytes(le) != LEGACY_MAGIC {
        bail!("not a torch.save file (wrong magic number)");
    }
    // One budget for the four pickles, relative to the whole file.
    let mut budget = pickle::budget_for(bytes.len());
    let mut next = |pos: &mut usize| -> Result<Obj> {
        let (obj, used, spent) = pickle::load_with_budget(&bytes[*pos..], budget)?;
        budget -= spent;
        *pos += used;
        Ok(obj)
    };
    let mut pos = used;
    let _protocol = next(&mut pos)?;
    let _sys_info = next(&mut pos)?;
    let root = next(&mut pos)?;
    let keys = next(&mut pos)?;
    let Obj::List(keys) = keys else { bail!("storage key list missing") };
    let mut tensors = Vec::new();
    flatten(&root, "", &mut tensors)?;
    let kinds: HashMap<&str, Kind> = tensors.iter().map(|(_, t)| (t.storage_key.as_str(), t.kind)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let Obj::Str(key) = key else { bail!("storage key is not a string") };
        let element = kinds.get(key.as_str()).map(|k| k.elt_size_in_bytes()).unwrap_or(1);
        let header = bytes.get(pos..pos + 8).ok_or_else(|| anyhow!("file ends inside storage {key}"))?;
        let count = u64::from_le_bytes(header.try_into().expect("8 bytes"));
        pos += 8;
        let remaining = (bytes.len() - pos) as u64;
        let len = count.checked_mul(element as u64).filter(|&len| len <= remaining).ok_or_else(|| {
            anyhow!("storage {key} declares {count} elements, more than the {remaining} bytes left in the file")
        })? as usize;
        let data = &bytes[pos..pos + len];
        pos += len;
        storages.insert(key, data.to_vec());
    }
    tensors
        .into_iter()
        .map(|(name, t)| {
            let data = storages.get(&t.storage_key).ok_or_else(|| anyhow!("storage {} missing", t.storage_key))?;
            Ok((name, materialise(&t, data)?))
        })
        .collect()
}

fn materialise(t: &TensorRef, storage: &[u8]) -> Result<Tensor> {
    let element = t.kind.elt_size_in_bytes();
    let numel = (storage.len() / element) as i64;
    if t.size.len() != t.stride.len() || t.offset < 0 || t.size.iter().chain(&t.stride).any(|&x| x < 0) {
        bail!("tensor of size {:?}, stride {:?} and offset {} is malformed", t.size, t.stride, t.offset);
    }
    // In i128: a forged shape may overflow i64.
    let count: i128 = t.size.iter().map(|&s| s as i128).product();
    let last: i128 = t.size.iter().zip(&t.stride).map(|(&s, &st)| (s as i128 - 1).max(0) * st as i128).sum();
    // A view may not hold more elements than its storage (a zero stride could expand a
    // few bytes into any size).
    if count > 0 && (t.offset as i128 + last >= numel as i128 || count > numel as i128) {
        bail!("tensor of size {:?} does not fit its storage of {numel} elements", t.size);
    }
    let flat = Tensor::f_from_data_size(storage, &[numel], t.kind)?;
    Ok(flat.f_as_strided(t.size.as_slice(), t.stride.as_slice(), Some(t.offset))?.f_contiguous()?)
}

/// Collects the tensors of nested dicts, names joined with `.`.
fn flatten(value: &Obj, prefix: &str, out: &mut Vec<(String, TensorRef)>) -> Result<()> {
    match value {
        Obj::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Obj::Str(s) => s.clone(),
                    Obj::Int(i) => i.to_string(),
                    other => bail!("unexpected dict key {}", short(other)),
                };
                let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                flatten(v, &name, out)?;
            }
            Ok(())
        }
        // An OrderedDict's `_metadata` state: not needed for weights.
        Obj::Build(inner, _) => flatten(inner, prefix, out),
        Obj::Call(func, args) => match tensor(func, args)? {
            Some(t) => {
                out.push((prefix.to_string(), t));
                Ok(())
            }
            None => Ok(()),
        },
        // Non-tensor entries (e.g. a checkpoint's epoch counter) are not weights.
        _ => Ok(()),
    }
}

/// The tensor a recorded call rebuilds; other calls are refused, since they would run
/// code in Python.
fn tensor(func: &Obj, args: &Obj) -> Result<Option<TensorRef>> {
    let Obj::Global(module, name) = func else { bail!("cannot call {}", short(func)) };
    let Obj::Tuple(args) = args else { bail!("arguments of {module}.{name} are not a tuple") };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (storage, offset, size, stride) = match args.as_slice() {
                [s, Obj::Int(o), size, stride, ..] => (s, *o, ints(size)?, ints(stride)?),
                _ => bail!("unexpected arguments of {module}.{name}"),
            };
            let Obj::PersistentId(pid) = storage else { bail!("tensor without a storage") };
            let (storage_key, kind) = persistent_storage(pid)?;
            Ok(Some(TensorRef { storage_key, kind, offset, size, stride }))
        }
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            match args.first() {
                Some(Obj::Call(f, a)) => tensor(f, a),
                _ => bail!("empty or malformed {module}.{name}"),
            }
        }
        _ => bail!("unsupported object {module}.{name} in the file (expected a plain state dict)"),
    }
}

/// A value for a message, cut short: a hostile file's value may be megabytes long.
fn short(obj: &Obj) -> String {
    let text = format!("{obj:?}");
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

fn storage_kind(name: &str) -> Result<Kind> {
    Ok(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        other => bail!("unsupported storage type torch.{other}"),
    })
}

/// `('storage', torch.XStorage, key, location, numel[, view])` → (key, element kind).
fn persistent_storage(pid: &Obj) -> Result<(String, Kind)> {
    let Obj::Tuple(items) = pid else { bail!("unexpected persistent id {}", short(pid)) };
    match items.as_slice() {
        [Obj::Str(tag), Obj::Global(module, name), key, ..] if tag == "storage" && module == "torch" => {
            let key = match key {
                Obj::Str(s) => s.clone(),
                Obj::Int(i) => i.to_string(),
                other => bail!("unexpected storage key {}", short(other)),
            };
            Ok((key, storage_kind(name)?))
        }
        _ => bail!("unexpected persistent id {}", short(pid)),
    }
}

fn ints(v: &Obj) -> Result<Vec<i64>> {
    match v {
        Obj::Tuple(items) | Obj::List(items) => items
            .iter()
            .map(|x| match x {
                Obj::Int(i) => Ok(*i),
                other => bail!("expected an integer, got {}", short(other)),
            })
            .collect(),
        other => bail!("expected a tuple of integers, got {}", short(other)),
    }
}
