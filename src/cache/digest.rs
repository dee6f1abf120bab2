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
//!
//! The memo file itself sits in the project, where others may write. Each memo therefore
//! carries a MAC (blake3 keyed with a 32-byte secret of this user's, `memo.key` in the user
//! cache, created mode 0600): a memo edited by hand, or one copied from another project or
//! user, fails it and the file is hashed again. Comparing the memo file's age with the
//! files' ctimes would not do: whoever edits the memo after the data makes it the newer.
//! Without a usable secret (not this user's, readable by others) nothing is memoised.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use difflow_core::files::{self, Purpose};
use serde::{Deserialize, Serialize};

/// The secret's file in the user cache.
pub const SECRET_FILE: &str = "memo.key";
const SECRET_LEN: usize = 32;

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
    /// The keyed hash of the path and every field above.
    #[serde(default)]
    mac: String,
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
            mac: String::new(),
        }
    }

    fn same_file(&self, other: &Memo) -> bool {
        (self.size, self.mtime_ns, self.ctime_ns, self.inode, self.device)
            == (other.size, other.mtime_ns, other.ctime_ns, other.inode, other.device)
    }

    /// The MAC of this memo for the file `id`.
    fn mac_for(&self, id: &str, secret: &[u8; SECRET_LEN]) -> String {
        let mut h = blake3::Hasher::new_keyed(secret);
        h.update(b"difflow-digest-memo-v1\0");
        h.update(&(id.len() as u64).to_le_bytes());
        h.update(id.as_bytes());
        h.update(&self.size.to_le_bytes());
        h.update(&self.mtime_ns.to_le_bytes());
        h.update(&self.ctime_ns.to_le_bytes());
        h.update(&self.inode.to_le_bytes());
        h.update(&self.device.to_le_bytes());
        h.update(self.blake3.as_bytes());
        h.finalize().to_hex().to_string()
    }
}

/// Digest memo; `save` writes it back when something new was hashed.
#[derive(Debug, Default)]
pub struct Digests {
    file: Option<PathBuf>,
    /// Signs the memos (`None`: in memory only, every memo made here is trusted).
    secret: Option<[u8; SECRET_LEN]>,
    memo: BTreeMap<String, Memo>,
    dirty: bool,
}

impl Digests {
    /// A memo that lives only in memory.
    pub fn in_memory() -> Digests {
        Digests::default()
    }

    /// The memo stored in `file`, its memos checked with this user's secret in `user_cache`
    /// (created when missing). Unreadable memos and those whose MAC fails are dropped; with
    /// no usable secret the memo lives in memory only.
    pub fn open(file: PathBuf, user_cache: &Path) -> Digests {
        let Some(secret) = user_secret(user_cache) else { return Digests::in_memory() };
        let stored: BTreeMap<String, Memo> = files::read_limited(&file, Purpose::Metadata)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let memo = stored.into_iter().filter(|(id, m)| m.mac == m.mac_for(id, &secret)).collect();
        Digests { file: Some(file), secret: Some(secret), memo, dirty: false }
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
        let mut memo = Memo { blake3: d.clone(), ..now };
        if let Some(secret) = &self.secret {
            memo.mac = memo.mac_for(&id, secret);
        }
        self.memo.insert(id, memo);
        self.dirty = true;
        Ok(d)
    }
}

/// This user's memo secret in `dir`, created when missing. `None` when it cannot be made or
/// is not fit to trust: not a regular file of [`SECRET_LEN`] bytes owned by this user and
/// closed to others.
fn user_secret(dir: &Path) -> Option<[u8; SECRET_LEN]> {
    let path = dir.join(SECRET_FILE);
    if !path.exists() {
        create_secret(dir, &path).ok()?;
    }
    use std::os::unix::fs::MetadataExt;
    let mut file = files::open_regular(&path).ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & 0o077 != 0 || meta.len() != SECRET_LEN as u64 {
        return None;
    }
    let mut secret = [0u8; SECRET_LEN];
    file.read_exact(&mut secret).ok()?;
    Some(secret)
}

/// Writes a fresh secret aside and links it into place, so that a process racing this one
/// reads either no secret or a whole one (and the first one made wins).
fn create_secret(dir: &Path, path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let mut secret = [0u8; SECRET_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    let tmp = dir.join(format!("{SECRET_FILE}.tmp{}", std::process::id()));
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let written = out.write_all(&secret).and_then(|()| out.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
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
        let user = d.path().join("user");
        let mut m = Digests::open(memo_file.clone(), &user);
        let first = m.digest(&f).unwrap().unwrap();
        m.save().unwrap();
        assert!(memo_file.exists());
        let m2 = Digests::open(memo_file.clone(), &user);
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

    /// A memo file edited to vouch for a changed file's new metadata with its old digest.
    fn forge(memo_file: &Path, file: &Path, old_digest: &str) {
        let mut stored: serde_json::Value = serde_json::from_slice(&std::fs::read(memo_file).unwrap()).unwrap();
        let id = file.to_string_lossy().into_owned();
        let mut forged = serde_json::to_value(Memo::of(&std::fs::metadata(file).unwrap())).unwrap();
        forged["blake3"] = old_digest.into();
        forged["mac"] = stored[&id]["mac"].clone();
        stored[&id] = forged;
        std::fs::write(memo_file, stored.to_string()).unwrap();
    }

    #[test]
    fn a_hand_edited_memo_cannot_make_a_changed_file_look_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let (f, memo_file, user) = (d.path().join("data.bin"), d.path().join("digests.json"), d.path().join("user"));
        std::fs::write(&f, b"hello").unwrap();
        let mut m = Digests::open(memo_file.clone(), &user);
        let old = m.digest(&f).unwrap().unwrap();
        m.save().unwrap();
        std::fs::write(&f, b"jello").unwrap();
        forge(&memo_file, &f, &old);
        let mut reopened = Digests::open(memo_file.clone(), &user);
        assert_eq!(reopened.digest(&f).unwrap().unwrap(), hash_file(&f).unwrap(), "the forged memo was trusted");
        // An honest memo still saves the work: it is trusted on the next open.
        reopened.save().unwrap();
        let again = Digests::open(memo_file.clone(), &user);
        assert_eq!(again.memo.len(), 1);
        assert_eq!(again.memo.values().next().unwrap().blake3, hash_file(&f).unwrap());
    }

    #[test]
    fn a_secret_that_others_can_read_or_replace_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user");
        assert!(user_secret(&user).is_some(), "created on first use");
        let mode = std::fs::metadata(user.join(SECRET_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(user_secret(&user), user_secret(&user), "and kept");
        std::fs::set_permissions(user.join(SECRET_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(user_secret(&user).is_none());
        let mut m = Digests::open(d.path().join("digests.json"), &user);
        std::fs::write(d.path().join("x"), b"x").unwrap();
        m.digest(&d.path().join("x")).unwrap();
        m.save().unwrap();
        assert!(!d.path().join("digests.json").exists(), "nothing is memoised without a secret");
    }
}
