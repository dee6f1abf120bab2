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

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Kind, Tensor};

/// A pickled value, as far as state dicts need. Booleans and floats are parsed (they occur
/// in `_rebuild_tensor_v2` arguments and metadata) but never read.
#[allow(dead_code)]
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage { key: String, kind: Kind },
    Tensor(TensorRef),
    Mark,
}

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
    let pickle = read_entry(&mut archive, &pickle_name)?;
    let (root, _) = Unpickler::new(&pickle).load()?;
    let mut tensors = Vec::new();
    flatten(&root, "", &mut tensors)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !storages.contains_key(&t.storage_key) {
            let data = read_entry(&mut archive, &format!("{prefix}data/{}", t.storage_key))?;
            storages.insert(t.storage_key.clone(), data);
        }
        out.push((name, materialise(&t, &storages[&t.storage_key])?));
    }
    Ok(out)
}

fn read_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str) -> Result<Vec<u8>> {
    let mut file = archive.by_name(name).with_context(|| format!("no {name} in the archive"))?;
    let mut data = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut data)?;
    Ok(data)
}

const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

fn load_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let (magic, used) = Unpickler::new(bytes).load().context("not a pickle")?;
    let Value::Bytes(b) = &magic else { bail!("not a torch.save file (no magic number)") };
    let mut le = [0u8; 16];
    le[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
    if b.len() > 16 || u128::from_le_bytes(le) != LEGACY_MAGIC {
        bail!("not a torch.save file (wrong magic number)");
    }
    let mut pos = used;
    let (_protocol, used) = Unpickler::new(&bytes[pos..]).load()?;
    pos += used;
    let (_sys_info, used) = Unpickler::new(&bytes[pos..]).load()?;
    pos += used;
    let (root, used) = Unpickler::new(&bytes[pos..]).load()?;
    pos += used;
    let (keys, used) = Unpickler::new(&bytes[pos..]).load()?;
    pos += used;
    let Value::List(keys) = keys else { bail!("storage key list missing") };
    let mut tensors = Vec::new();
    flatten(&root, "", &mut tensors)?;
    let kinds: HashMap<&str, Kind> = tensors.iter().map(|(_, t)| (t.storage_key.as_str(), t.kind)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else { bail!("storage key is not a string") };
        let element = kinds.get(key.as_str()).map(|k| k.elt_size_in_bytes()).unwrap_or(1);
        let header = bytes.get(pos..pos + 8).ok_or_else(|| anyhow!("file ends inside storage {key}"))?;
        let count = u64::from_le_bytes(header.try_into().unwrap()) as usize;
        pos += 8;
        let len = count * element;
        let data = bytes.get(pos..pos + len).ok_or_else(|| anyhow!("file ends inside storage {key}"))?;
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
    let needed = t.offset + t.size.iter().zip(&t.stride).map(|(s, st)| (s - 1).max(0) * st).sum::<i64>() + 1;
    if t.size.iter().all(|&s| s > 0) && needed > numel {
        bail!("tensor of size {:?} does not fit its storage of {numel} elements", t.size);
    }
    let flat = Tensor::f_from_data_size(storage, &[numel], t.kind)?;
    Ok(flat.f_as_strided(t.size.as_slice(), t.stride.as_slice(), Some(t.offset))?.f_contiguous()?)
}

/// Collects the tensors of nested dicts, names joined with `.`.
fn flatten(value: &Value, prefix: &str, out: &mut Vec<(String, TensorRef)>) -> Result<()> {
    match value {
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    other => bail!("unexpected dict key {other:?}"),
                };
                let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                flatten(v, &name, out)?;
            }
            Ok(())
        }
        Value::Tensor(t) => {
            out.push((prefix.to_string(), t.clone()));
            Ok(())
        }
        // Non-tensor entries (e.g. a checkpoint's epoch counter) are not weights.
        _ => Ok(()),
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

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Unpickler { data, pos: 0, stack: Vec::new(), memo: HashMap::new() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos + n).ok_or_else(|| anyhow!("pickle ends early"))?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| anyhow!("pickle ends early"))?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| anyhow!("pickle stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at =
            self.stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or_else(|| anyhow!("pickle MARK missing"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> Result<&mut Value> {
        self.stack.last_mut().ok_or_else(|| anyhow!("pickle stack underflow"))
    }

    /// Runs one pickle to its STOP; returns the value and the bytes consumed.
    fn load(mut self) -> Result<(Value, usize)> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok((v, self.pos));
                }
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64))
                }
                0x8a => {
                    // LONG1: little-endian two's complement; kept as bytes when wider than i64.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n <= 8 {
                        let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                        buf[..n].copy_from_slice(b);
                        self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                    } else {
                        self.stack.push(Value::Bytes(b.to_vec()));
                    }
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.stack.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s))
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(if op == b'T' {
                        Value::Str(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        Value::Bytes(b)
                    })
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(if op == b'U' {
                        Value::Str(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        Value::Bytes(b)
                    })
                }
                b')' => self.stack.push(Value::Tuple(vec![])),
                b']' => self.stack.push(Value::List(vec![])),
                b'}' => self.stack.push(Value::Dict(vec![])),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        bail!("pickle stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items.chunks(2).map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or(Value::None)));
                    self.stack.push(Value::Dict(pairs.collect()))
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => bail!("APPEND to a non-list"),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => bail!("APPENDS to a non-list"),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => bail!("SETITEM on a non-dict"),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Dict(d) => {
                            for pair in items.chunks(2) {
                                d.push((pair[0].clone(), pair.get(1).cloned().unwrap_or(Value::None)));
                            }
                        }
                        _ => bail!("SETITEMS on a non-dict"),
                    }
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.push_memo(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.push_memo(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => bail!("STACK_GLOBAL without strings"),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = persistent_storage(pid)?;
                    self.stack.push(storage)
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = reduce(func, args)?;
                    self.stack.push(v)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only OrderedDict-like classes occur.
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = reduce(cls, args)?;
                    self.stack.push(v)
                }
                b'b' => {
                    // BUILD: object state (an OrderedDict's `_metadata`); not needed for weights.
                    self.pop()?;
                }
                other => bail!("unsupported pickle opcode 0x{other:02x} at byte {}", self.pos - 1),
            }
        }
    }

    fn push_memo(&mut self, i: u32) -> Result<()> {
        let v = self.memo.get(&i).cloned().ok_or_else(|| anyhow!("pickle memo {i} missing"))?;
        self.stack.push(v);
        Ok(())
    }
}

/// `('storage', torch.XStorage, key, location, numel[, view])` → a storage reference.
fn persistent_storage(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else { bail!("unexpected persistent id {pid:?}") };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(module, name), key, ..] if tag == "storage" && module == "torch" => {
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => bail!("unexpected storage key {other:?}"),
            };
            Ok(Value::Storage { key, kind: storage_kind(name)? })
        }
        _ => bail!("unexpected persistent id {items:?}"),
    }
}

fn ints(v: &Value) -> Result<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) => Ok(*i),
                other => bail!("expected an integer, got {other:?}"),
            })
            .collect(),
        other => bail!("expected a tuple of integers, got {other:?}"),
    }
}

fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &func else { bail!("cannot call {func:?}") };
    let Value::Tuple(args) = args else { bail!("arguments of {module}.{name} are not a tuple") };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (storage, offset, size, stride) = match args.as_slice() {
                [s, Value::Int(o), size, stride, ..] => (s, *o, ints(size)?, ints(stride)?),
                _ => bail!("unexpected arguments of {module}.{name}"),
            };
            let Value::Storage { key, kind } = storage else { bail!("tensor without a storage") };
            Ok(Value::Tensor(TensorRef { storage_key: key.clone(), kind: *kind, offset, size, stride }))
        }
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().ok_or_else(|| anyhow!("empty _rebuild_parameter"))
        }
        ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => Ok(Value::Dict(vec![])),
        _ => bail!("unsupported object {module}.{name} in the file (expected a plain state dict)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_hand_written_protocol2_pickle() {
        // {'a': 1, 'b': [2.5, 'x']} with protocol 2.
        let pickle: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x04eu.";
        let (v, used) = Unpickler::new(pickle).load().unwrap();
        assert_eq!(used, pickle.len());
        let Value::Dict(items) = v else { panic!("not a dict") };
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0], (Value::Str(k), Value::Int(1)) if k == "a"));
        match &items[1] {
            (Value::Str(k), Value::List(l)) if k == "b" => {
                assert!(matches!(l[0], Value::Float(f) if f == 2.5));
                assert!(matches!(&l[1], Value::Str(s) if s == "x"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
