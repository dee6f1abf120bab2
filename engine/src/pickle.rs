//! The one pickle interpreter of the engine, shared by CIFAR-10's python batches and torch
//! `.pth` weights. It never runs code: calls of globals are recorded as [`Obj::Call`] and
//! object state as [`Obj::Build`], for the caller to recognise.
//!
//! Pickles come from strangers, so every resource is bounded:
//! - every declared length is checked against the bytes that remain before it is read;
//! - values nest at most [`MAX_DEPTH`] deep (deeper trees would overflow the stack when
//!   they are walked or dropped);
//! - memo PUT/GET copy values, so a few hundred bytes of nested PUT/GET could grow into
//!   gigabytes: every byte the interpreter materialises (read from the file or copied) is
//!   counted against a budget proportional to the file's size ([`budget_for`]).

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};

/// How deep values may nest. State dicts and CIFAR batches nest under 10 levels.
pub const MAX_DEPTH: u32 = 200;

/// What one value costs besides its payload bytes (a rough size of an [`Obj`] in memory).
const NODE_COST: u64 = 48;

/// The bytes a pickle of `len` bytes may materialise. A value takes ~16 times more
/// memory than its opcodes (a node costs [`NODE_COST`], its opcode 2–5 bytes), and real
/// pickles PUT every value once and GET some of them again (a torch state dict spends
/// ~30 times its length); memo amplification goes far beyond any such factor.
pub fn budget_for(len: usize) -> u64 {
    64 * len as u64 + (16 << 20)
}

/// A pickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as little-endian two's complement bytes.
    BigInt(Vec<u8>),
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
    /// A persistent id (torch's storages), for the caller to resolve.
    PersistentId(Box<Obj>),
}

/// A value on the stack or in the memo, with its nesting depth and materialised size.
#[derive(Clone)]
struct Slot {
    obj: Obj,
    depth: u32,
    cost: u64,
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u64, Slot>,
    budget: u64,
}

/// Interprets the pickle at the start of `bytes` up to its STOP; returns the value and
/// the number of bytes it took. The budget is [`budget_for`] the whole of `bytes`.
pub fn load(bytes: &[u8]) -> Result<(Obj, usize)> {
    load_with_budget(bytes, budget_for(bytes.len())).map(|(obj, used, _)| (obj, used))
}

/// As [`load`], with an explicit budget of materialised bytes; also returns what it spent
/// (for files of several pickles that share one budget).
pub fn load_with_budget(bytes: &[u8], budget: u64) -> Result<(Obj, usize, u64)> {
    let mut m = Machine { bytes, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), budget };
    let obj = m.run()?;
    Ok((obj, m.pos, budget - m.budget))
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            bail!("truncated at byte {}: an opcode wants {n} more bytes, {remaining} remain", self.pos);
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u64> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?) as u64)
    }
    fn u32(&mut self) -> Result<u64> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?) as u64)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| anyhow!("truncated inside a text line"))?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn charge(&mut self, cost: u64) -> Result<()> {
        if cost > self.budget {
            bail!("the pickle expands to more data than its size allows (memo amplification?)");
        }
        self.budget -= cost;
        Ok(())
    }

    /// Pushes a value made of no other values, with `payload` bytes of data.
    fn leaf(&mut self, obj: Obj, payload: usize) -> Result<()> {
        let cost = NODE_COST + payload as u64;
        self.charge(cost)?;
        self.stack.push(Slot { obj, depth: 1, cost });
        Ok(())
    }

    fn pop(&mut self) -> Result<Slot> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("stack underflow at byte {}", self.pos);
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Slot>> {
        let at = self.marks.pop().ok_or_else(|| anyhow!("no MARK on the stack at byte {}", self.pos))?;
        Ok(self.stack.split_off(at))
    }

    fn top(&mut self) -> Result<&mut Slot> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("stack underflow at byte {}", self.pos);
        }
        Ok(self.stack.last_mut().expect("checked above"))
    }

    /// Pushes the value `make` builds from `parts`, checking the nesting depth.
    fn combine(&mut self, parts: Vec<Slot>, make: impl FnOnce(Vec<Obj>) -> Obj) -> Result<()> {
        let depth = 1 + parts.iter().map(|s| s.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            bail!("values nest deeper than {MAX_DEPTH} levels at byte {}", self.pos);
        }
        let cost = NODE_COST + parts.iter().map(|s| s.cost).sum::<u64>();
        let obj = make(parts.into_iter().map(|s| s.obj).collect());
        self.stack.push(Slot { obj, depth, cost });
        Ok(())
    }

    /// Adds `items` to the list or dict on top of the stack.
    fn extend_top(&mut self, items: Vec<Slot>, what: &str) -> Result<()> {
        let pos = self.pos;
        let depth = 1 + items.iter().map(|s| s.depth).max().unwrap_or(0);
        let cost: u64 = items.iter().map(|s| s.cost).sum();
        let top = self.top()?;
        match (&mut top.obj, what) {
            (Obj::List(l), "list") => l.extend(items.into_iter().map(|s| s.obj)),
            (Obj::Dict(d), "dict") => {
                if !items.len().is_multiple_of(2) {
                    bail!("odd number of items for a dict at byte {pos}");
                }
                let mut it = items.into_iter().map(|s| s.obj);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            _ => bail!("adding items to a value that is not a {what} at byte {pos}"),
        }
        top.depth = top.depth.max(depth);
        top.cost += cost;
        if top.depth > MAX_DEPTH {
            bail!("values nest deeper than {MAX_DEPTH} levels at byte {pos}");
        }
        Ok(())
    }

    fn memo_put(&mut self, index: u64) -> Result<()> {
        let slot = self.top()?.clone();
        self.charge(slot.cost)?;
        self.memo.insert(index, slot);
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Result<()> {
        let slot = self.memo.get(&index).cloned().ok_or_else(|| anyhow!("memo {index} is not set"))?;
        self.charge(slot.cost)?;
        self.stack.push(slot);
        Ok(())
    }

    fn bytes_leaf(&mut self, n: u64, text: bool) -> Result<()> {
        let b = self.take(n)?;
        let obj = if text { Obj::Str(String::from_utf8_lossy(b).into_owned()) } else { Obj::Bytes(b.to_vec()) };
        self.leaf(obj, n as usize)
    }

    fn int_leaf(&mut self, n: u64) -> Result<()> {
        let b = self.take(n)?;
        if n <= 8 {
            let negative = b.last().is_some_and(|&x| x & 0x80 != 0);
            let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
            buf[..b.len()].copy_from_slice(b);
            self.leaf(Obj::Int(i64::from_le_bytes(buf)), 0)
        } else {
            self.leaf(Obj::BigInt(b.to_vec()), b.len())
        }
    }

    fn run(&mut self) -> Result<Obj> {
        loop {
            let op = self.u8()?;
            self.step(op)?;
            if op == b'.' {
                let slot = self.stack.pop().ok_or_else(|| anyhow!("STOP with an empty stack"))?;
                return Ok(slot.obj);
            }
        }
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            b'.' => Ok(()),
            0x80 => self.u8().map(drop),  // PROTO
            0x95 => self.u64().map(drop), // FRAME: a hint for buffering
            b'(' => {
                self.marks.push(self.stack.len());
                Ok(())
            }
            b'0' => self.pop().map(drop),
            b'1' => self.pop_mark().map(drop),
            b'N' | 0x88 | 0x89 | b'J' | b'K' | b'M' | 0x8a | 0x8b | b'I' | b'L' | b'G' => self.number(op),
            b'U' | b'C' | b'T' | b'B' | 0x8e | 0x96 | 0x8c | b'X' | 0x8d => self.string(op),
            b'}' | b']' | b')' | b'd' | b'l' | b't' | 0x85..=0x87 | b'a' | b'e' | b's' | b'u' => self.container(op),
            b'c' | 0x93 | b'R' | 0x81 | b'b' | b'Q' => self.object(op),
            b'q' | b'r' | 0x94 | b'p' | b'h' | b'j' | b'g' => self.memo_op(op),
            other => bail!("unsupported pickle opcode 0x{other:02x} at byte {}", self.pos - 1),
        }
    }

    /// None, booleans, integers and floats.
    fn number(&mut self, op: u8) -> Result<()> {
        match op {
            b'N' => self.leaf(Obj::None, 0)?,
            0x88 => self.leaf(Obj::Bool(true), 0)?,
            0x89 => self.leaf(Obj::Bool(false), 0)?,
            b'J' => {
                let v = i32::from_le_bytes(self.take(4)?.try_into()?);
                self.leaf(Obj::Int(v as i64), 0)?
            }
            b'K' => {
                let v = self.u8()?;
                self.leaf(Obj::Int(v as i64), 0)?
            }
            b'M' => {
                let v = self.u16()?;
                self.leaf(Obj::Int(v as i64), 0)?
            }
            0x8a => {
                let n = self.u8()? as u64; // LONG1
                self.int_leaf(n)?
            }
            0x8b => {
                let n = self.u32()?; // LONG4
                self.int_leaf(n)?
            }
            b'I' => {
                let line = self.line()?;
                let obj = match line.as_str() {
                    "01" => Obj::Bool(true),
                    "00" => Obj::Bool(false),
                    s => Obj::Int(s.parse().map_err(|_| anyhow!("bad INT {s:?}"))?),
                };
                self.leaf(obj, 0)?
            }
            b'L' => {
                let line = self.line()?;
                let v = line.trim_end_matches('L').parse().map_err(|_| anyhow!("bad LONG {line:?}"))?;
                self.leaf(Obj::Int(v), 0)?
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take(8)?.try_into()?);
                self.leaf(Obj::Float(v), 0)?
            }
            _ => unreachable!("dispatched by step"),
        }
        Ok(())
    }

    /// Byte and text strings.
    fn string(&mut self, op: u8) -> Result<()> {
        match op {
            // Python 2 `str`s (U, T) are bytes; unicode (X, 0x8c, 0x8d) is text.
            b'U' | b'C' => {
                let n = self.u8()? as u64;
                self.bytes_leaf(n, false)?
            }
            b'T' | b'B' => {
                let n = self.u32()?;
                self.bytes_leaf(n, false)?
            }
            0x8e | 0x96 => {
                let n = self.u64()?; // BINBYTES8, BYTEARRAY8
                self.bytes_leaf(n, false)?
            }
            0x8c => {
                let n = self.u8()? as u64;
                self.bytes_leaf(n, true)?
            }
            b'X' => {
                let n = self.u32()?;
                self.bytes_leaf(n, true)?
            }
            0x8d => {
                let n = self.u64()?;
                self.bytes_leaf(n, true)?
            }
            _ => unreachable!("dispatched by step"),
        }
        Ok(())
    }

    /// Empty containers, containers from the stack, and items added to them.
    fn container(&mut self, op: u8) -> Result<()> {
        match op {
            b'}' => self.leaf(Obj::Dict(Vec::new()), 0)?,
            b']' => self.leaf(Obj::List(Vec::new()), 0)?,
            b')' => self.leaf(Obj::Tuple(Vec::new()), 0)?,
            b'd' => {
                let items = self.pop_mark()?;
                if !items.len().is_multiple_of(2) {
                    bail!("odd number of items for a dict at byte {}", self.pos);
                }
                self.combine(items, |objs| {
                    let mut it = objs.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Obj::Dict(pairs)
                })?
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.combine(items, Obj::List)?
            }
            b't' => {
                let items = self.pop_mark()?;
                self.combine(items, Obj::Tuple)?
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.combine(items, Obj::Tuple)?
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_top(vec![v], "list")?
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_top(items, "list")?
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.extend_top(vec![k, v], "dict")?
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.extend_top(items, "dict")?
            }
            _ => unreachable!("dispatched by step"),
        }
        Ok(())
    }

    /// Globals, calls (recorded, not run), object state and persistent ids.
    fn object(&mut self, op: u8) -> Result<()> {
        match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let payload = module.len() + name.len();
                self.leaf(Obj::Global(module, name), payload)?
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.obj, name.obj) {
                    (Obj::Str(m), Obj::Str(n)) => {
                        let payload = m.len() + n.len();
                        self.leaf(Obj::Global(m, n), payload)?
                    }
                    _ => bail!("STACK_GLOBAL without strings at byte {}", self.pos),
                }
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let f = self.pop()?;
                self.call(f, args)?
            }
            b'b' => {
                let state = self.pop()?;
                let obj = self.pop()?;
                self.combine(vec![obj, state], |mut v| {
                    let state = v.pop().expect("two parts");
                    Obj::Build(Box::new(v.pop().expect("two parts")), Box::new(state))
                })?
            }
            b'Q' => {
                let pid = self.pop()?;
                self.combine(vec![pid], |mut v| Obj::PersistentId(Box::new(v.pop().expect("one part"))))?
            }
            _ => unreachable!("dispatched by step"),
        }
        Ok(())
    }

    /// Memo PUT and GET: the opcodes differ in how they give the memo index.
    fn memo_op(&mut self, op: u8) -> Result<()> {
        let get = matches!(op, b'h' | b'j' | b'g');
        let index = match op {
            b'q' | b'h' => self.u8()? as u64,
            b'r' | b'j' => self.u32()?,
            0x94 => self.memo.len() as u64,
            b'p' | b'g' => {
                let line = self.line()?;
                line.parse().map_err(|_| anyhow!("bad {} {line:?}", if get { "GET" } else { "PUT" }))?
            }
            _ => unreachable!("dispatched by step"),
        };
        if get {
            self.memo_get(index)
        } else {
            self.memo_put(index)
        }
    }

    /// REDUCE/NEWOBJ. The dict classes become plain dicts (their items follow as
    /// SETITEMS); any other call is recorded, not run.
    fn call(&mut self, f: Slot, args: Slot) -> Result<()> {
        let plain_dict = matches!(&f.obj, Obj::Global(m, n)
            if matches!((m.as_str(), n.as_str()), ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict")))
            && args.obj == Obj::Tuple(Vec::new());
        if plain_dict {
            return self.leaf(Obj::Dict(Vec::new()), 0);
        }
        self.combine(vec![f, args], |mut v| {
            let args = v.pop().expect("two parts");
            Obj::Call(Box::new(v.pop().expect("two parts")), Box::new(args))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_hand_written_protocol2_pickle() {
        // {'a': 1, 'b': [2.5, 'x']} with protocol 2.
        let pickle: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x04eu.";
        let (v, used) = load(pickle).unwrap();
        assert_eq!(used, pickle.len());
        let Obj::Dict(items) = v else { panic!("not a dict") };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], (Obj::Str("a".into()), Obj::Int(1)));
        assert_eq!(items[1], (Obj::Str("b".into()), Obj::List(vec![Obj::Float(2.5), Obj::Str("x".into())])));
    }

    #[test]
    fn a_huge_declared_length_is_an_error() {
        let mut p = vec![0x8e];
        p.extend_from_slice(&u64::MAX.to_le_bytes());
        p.extend_from_slice(b"abc.");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn memo_amplification_is_stopped() {
        // 64 KiB of bytes, then 40 rounds of "a list of two copies of the previous one".
        let mut p = vec![b'B'];
        p.extend_from_slice(&65536u32.to_le_bytes());
        p.extend(std::iter::repeat_n(0u8, 65536));
        p.extend_from_slice(b"q\x00");
        for _ in 0..40 {
            p.extend_from_slice(b"(h\x00h\x00lq\x00");
        }
        p.push(b'.');
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("expands"), "{e}");
    }

    #[test]
    fn deep_nesting_is_stopped() {
        let mut p = b"N".to_vec();
        p.extend(std::iter::repeat_n(0x85u8, 100_000));
        p.push(b'.');
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("nest deeper"), "{e}");
    }

    #[test]
    fn calls_are_recorded_not_run() {
        let p = b"cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let (v, _) = load(p).unwrap();
        assert_eq!(
            v,
            Obj::Call(
                Box::new(Obj::Global("os".into(), "system".into())),
                Box::new(Obj::Tuple(vec![Obj::Str("ls".into())]))
            )
        );
    }
}
