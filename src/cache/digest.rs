//! Content digests of the files and folders a stage reads, memoised by (path, size,
//! modification time) in `.difflow/digests.json` so that `difflow plan` stays fast on
//! large datasets.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Memo {
    size: u64,
    mtime_ns: u128,
    blake3: String,
}

/// Digest memo; `save` writes it back when something new was hashed.
#[derive(Debug, Default)]
pub struct Digests {
    file: Option<PathBuf>,
    memo: BTreeMap<String, Memo>,
    dirty: bool,
}

impl Digests {
    /// A memo that lives only in memory.
    pub fn in_memory() -> Digests {
        Digests::default()
    }

    /// The memo stored in `file` (a missing or unreadable file starts an empty memo).
    pub fn open(file: PathBuf) -> Digests {
        let memo = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Digests { file: Some(file), memo, dirty: false }
    }

    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension(format!("json.tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&self.memo).expect("memo serialises"))?;
        std::fs::rename(&tmp, file)?;
        self.dirty = false;
        Ok(())
    }

    /// The blake3 digest of a file, or of a folder: every file under it by relative name
    /// (sorted), its size and its contents' digest. `None` when the path does not exist.
    pub fn digest(&mut self, path: &Path) -> std::io::Result<Option<String>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            return self.file_digest(path, &meta).map(Some);
        }
        let mut files = Vec::new();
        list_files(path, Path::new(""), &mut files)?;
        files.sort();
        let mut h = blake3::Hasher::new();
        h.update(b"difflow-folder-v1\0");
        for rel in files {
            let full = path.join(&rel);
            let meta = std::fs::metadata(&full)?;
            let d = self.file_digest(&full, &meta)?;
            let name = rel.to_string_lossy().replace('\\', "/");
            h.update(name.as_bytes());
            h.update(b"\0");
            h.update(&meta.len().to_le_bytes());
            h.update(d.as_bytes());
        }
        Ok(Some(h.finalize().to_hex().to_string()))
    }

    fn file_digest(&mut self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String> {
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let id = path.to_string_lossy().into_owned();
        if let Some(m) = self.memo.get(&id) {
            if m.size == meta.len() && m.mtime_ns == mtime_ns {
                return Ok(m.blake3.clone());
            }
        }
        let d = hash_file(path)?;
        self.memo.insert(id, Memo { size: meta.len(), mtime_ns, blake3: d.clone() });
        self.dirty = true;
        Ok(d)
    }
}

/// blake3 of a file's contents, hex.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Every regular file under `dir`, as paths relative to the starting folder.
pub fn list_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let r = rel.join(entry.file_name());
        if ty.is_dir() {
            list_files(dir, &r, out)?;
        } else if ty.is_file() || (ty.is_symlink() && dir.join(&r).is_file()) {
            out.push(r);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_digest_depends_on_names_and_contents_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("x.bin"), b"abc").unwrap();
            std::fs::write(d.join("sub/y.bin"), b"def").unwrap();
        }
        let mut m = Digests::in_memory();
        let da = m.digest(a.path()).unwrap().unwrap();
        assert_eq!(da, m.digest(b.path()).unwrap().unwrap());
        std::fs::write(b.path().join("sub/y.bin"), b"deg").unwrap();
        assert_ne!(da, m.digest(b.path()).unwrap().unwrap());
        std::fs::rename(a.path().join("x.bin"), a.path().join("z.bin")).unwrap();
        assert_ne!(da, m.digest(a.path()).unwrap().unwrap());
        assert_eq!(m.digest(&a.path().join("missing")).unwrap(), None);
    }

    #[test]
    fn memo_is_persisted_and_invalidated_by_size() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("data.bin");
        std::fs::write(&f, b"hello").unwrap();
        let memo_file = d.path().join("digests.json");
        let mut m = Digests::open(memo_file.clone());
        let first = m.digest(&f).unwrap().unwrap();
        m.save().unwrap();
        assert!(memo_file.exists());
        let m2 = Digests::open(memo_file.clone());
        assert_eq!(m2.memo.len(), 1);
        std::fs::write(&f, b"hello, world").unwrap();
        let mut m2 = m2;
        assert_ne!(first, m2.digest(&f).unwrap().unwrap());
    }
}
