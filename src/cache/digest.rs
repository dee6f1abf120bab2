//! Content digests of the files and folders a stage reads, memoised in
//! `.difflow/digests.json` so that `difflow plan` stays fast on large datasets.
//!
//! A memo is trusted while the file's path, size, modification time, status-change time
//! (ctime), inode and device are all unchanged. The mtime alone is not enough: anyone can
//! set it back after editing a file (`touch -d`, `cp -p`, `rsync -t`). The ctime cannot be
//! set: every write or metadata change moves it to the current clock, so an edit with a
//! restored mtime still shows. What remains trusted is the system clock (an edit made
//! while the clock is set back to the exact old ctime, which needs root) and a
//! filesystem that keeps ctime (all POSIX ones do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Memo {
    size: u64,
    mtime_ns: u128,
    #[serde(default)]
    ctime_ns: i128,
    #[serde(default)]
    inode: u64,
    #[serde(default)]
    device: u64,
    blake3: String,
}

impl Memo {
    /// The memo a file's metadata would have (its digest left empty).
    fn of(meta: &std::fs::Metadata) -> Memo {
        use std::os::unix::fs::MetadataExt;
        let mtime_ns = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        Memo {
            size: meta.len(),
            mtime_ns,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
            device: meta.dev(),
            blake3: String::new(),
        }
    }

    fn same_file(&self, other: &Memo) -> bool {
        (self.size, self.mtime_ns, self.ctime_ns, self.inode, self.device)
            == (other.size, other.mtime_ns, other.ctime_ns, other.inode, other.device)
    }
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
        if !meta.is_dir() {
            // Hashing a FIFO would hang, a device would never end.
            return Err(std::io::Error::other("it is not a regular file or a folder"));
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
        let now = Memo::of(meta);
        let id = path.to_string_lossy().into_owned();
        if let Some(m) = self.memo.get(&id) {
            if m.same_file(&now) {
                return Ok(m.blake3.clone());
            }
        }
        let d = hash_file(path)?;
        self.memo.insert(id, Memo { blake3: d.clone(), ..now });
        self.dirty = true;
        Ok(d)
    }
}

/// blake3 of a file's contents, hex.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    read_into(path, &mut h)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Streams a file's contents into `sink` (a hasher) in 64 KiB reads.
pub fn read_into(path: &Path, sink: &mut impl std::io::Write) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    std::io::copy(&mut std::io::BufReader::with_capacity(1 << 16, file), sink)
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

    #[test]
    fn an_edit_with_the_old_mtime_restored_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("data.bin");
        std::fs::write(&f, b"hello").unwrap();
        let old_mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let mut m = Digests::in_memory();
        let first = m.digest(&f).unwrap().unwrap();
        // The same size, the old mtime: only the ctime (and the contents) tell.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"jello").unwrap();
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(old_mtime).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), old_mtime);
        assert_ne!(first, m.digest(&f).unwrap().unwrap());
        assert_eq!(m.digest(&f).unwrap().unwrap(), hash_file(&f).unwrap(), "the memo holds the new digest");
    }
}
