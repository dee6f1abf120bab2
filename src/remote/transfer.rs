//! Moving one entry: a push uploads the local entry's blobs it lacks, then its manifest; a
//! pull downloads into `<key>.pulling/` beside the cache, checks every file against the
//! manifest's digest and size, and hands the folder to the cache's own staging and commit.
//! Both run under the entry's lock, held by the caller.

use std::io::Write;
use std::path::{Component, Path};
use std::time::Instant;

use super::{blob_path, is_digest, manifest_path, Remote, MANIFEST_LIMIT};
use crate::cache::store::MANIFEST;
use crate::cache::{Cache, EntryLock, Manifest};

/// What one push or pull moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transfer {
    /// Files sent or received.
    pub files: usize,
    pub bytes: u64,
    /// Files a push left out because the remote had their blob already.
    pub skipped: usize,
    pub secs: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PullOutcome {
    Pulled(Transfer),
    /// The remote has no (complete) entry of the key.
    Absent,
}

/// Upload the committed entry `key` (its lock held by the caller); `Ok(None)` when the
/// remote has its manifest and every blob already. Blobs go first, the manifest last; a
/// remote that lost blobs of an entry gets them back.
pub fn push_entry(remote: &Remote, cache: &Cache, key: &str) -> Result<Option<Transfer>, String> {
    let m = cache.verify(key).map_err(|e| format!("the local entry {key} cannot be pushed: {e}"))?;
    let backend = remote.backend();
    let had_manifest = backend.exists(&manifest_path(key))?;
    let start = Instant::now();
    let dir = cache.entry_dir(key);
    let mut t = Transfer::default();
    for (rel, out) in &m.outputs {
        let blob = blob_path(&out.blake3);
        if backend.exists(&blob)? {
            t.skipped += 1;
            continue;
        }
        backend.put(&blob, &dir.join(rel), out.size)?;
        t.files += 1;
        t.bytes += out.size;
    }
    if had_manifest && t.files == 0 {
        return Ok(None);
    }
    let manifest = dir.join(MANIFEST);
    let size = std::fs::metadata(&manifest).map_err(|e| format!("cannot read {}: {e}", manifest.display()))?.len();
    backend.put(&manifest_path(key), &manifest, size)?;
    t.secs = start.elapsed().as_secs_f64();
    Ok(Some(t))
}

/// Download the remote's entry of `key` into the local cache (the caller holds the
/// entry's lock and found no local entry). `material` is the local key material
/// (canonical JSON): a manifest computed from anything else is refused, whatever key it
/// names. Any file that does not match its digest refuses the whole entry; nothing of a
/// refused entry stays behind.
pub fn pull_entry(remote: &Remote, cache: &Cache, lock: &EntryLock, material: &str) -> Result<PullOutcome, String> {
    let key = lock.key.as_str();
    let start = Instant::now();
    let Some(manifest) = fetch_manifest(remote, key, material)? else { return Ok(PullOutcome::Absent) };
    let pulling = cache.dir.join(format!("{key}.pulling"));
    let fresh = || match std::fs::remove_dir_all(&pulling) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => std::fs::create_dir_all(&pulling),
    };
    fresh().map_err(|e| format!("cannot prepare {}: {e}", pulling.display()))?;
    let received = download_outputs(remote, &manifest, &pulling).and_then(|t| {
        let staging = cache.staging(lock, true).map_err(|e| format!("cannot prepare the staging folder: {e}"))?;
        std::fs::remove_dir(&staging)
            .and_then(|()| std::fs::rename(&pulling, &staging))
            .map_err(|e| format!("cannot move the pulled files into {}: {e}", staging.display()))?;
        cache.commit(lock, manifest.clone()).map_err(|e| format!("cannot commit the pulled entry: {e}"))?;
        Ok(t)
    });
    let _ = std::fs::remove_dir_all(&pulling);
    let mut t = received?;
    t.secs = start.elapsed().as_secs_f64();
    Ok(PullOutcome::Pulled(t))
}

/// The remote's manifest of `key`, checked to belong to it; `None` when it has none.
fn fetch_manifest(remote: &Remote, key: &str, material: &str) -> Result<Option<Manifest>, String> {
    let path = manifest_path(key);
    let url = remote.backend().url(&path);
    let mut bytes = Vec::new();
    if !remote.backend().get(&path, &mut bytes, MANIFEST_LIMIT)? {
        return Ok(None);
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{url} is not UTF-8 text: refused"))?;
    let m: Manifest =
        toml::from_str(&text).map_err(|e| format!("{url} is not a difflow manifest ({}): refused", e.message()))?;
    if m.key != key {
        return Err(format!("{url} names the key {}, not {key}: refused", m.key));
    }
    if m.key_material != material {
        return Err(format!("{url} was computed from other inputs or parameters than this stage's key says: refused"));
    }
    for (rel, out) in &m.outputs {
        if !is_safe_relative(rel) {
            return Err(format!("{url} lists the output `{rel}`, which is not a plain path inside the entry: refused"));
        }
        if !is_digest(&out.blake3) {
            return Err(format!("{url} gives `{rel}` the digest `{}`, which is no blake3 digest: refused", out.blake3));
        }
    }
    Ok(Some(m))
}

/// `a/b.png`, never `/x`, `../x`, `a//b` or the manifest's own name.
fn is_safe_relative(rel: &str) -> bool {
    let path = Path::new(rel);
    !rel.is_empty()
        && rel != MANIFEST
        && !rel.contains('\\')
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && path.components().count() == rel.split('/').count()
}

fn download_outputs(remote: &Remote, m: &Manifest, into: &Path) -> Result<Transfer, String> {
    let mut t = Transfer::default();
    for (rel, out) in &m.outputs {
        let blob = blob_path(&out.blake3);
        let url = remote.backend().url(&blob);
        let dest = into.join(rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let file = std::fs::File::create(&dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        let mut sink = Hashing {
            inner: std::io::BufWriter::with_capacity(1 << 16, file),
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        if !remote.backend().get(&blob, &mut sink, out.size)? {
            return Err(format!("{url} (`{rel}`) is missing: the remote's entry is incomplete"));
        }
        sink.inner.flush().map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        let digest = sink.hasher.finalize().to_hex().to_string();
        if sink.bytes != out.size || digest != out.blake3 {
            return Err(format!("{url} (`{rel}`) does not match its digest: refused"));
        }
        t.files += 1;
        t.bytes += out.size;
    }
    Ok(t)
}

/// A writer that digests and counts what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::is_safe_relative;

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        for ok in ["a.txt", "sub/grid.png", "checkpoint/state.json"] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "manifest.toml", "a\\b", "a/"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }
}
