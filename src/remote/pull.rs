//! Pulling one entry: the manifest first, checked to belong to the key; then its files,
//! side by side, into `<key>.pulling/` beside the cache, each checked against the
//! manifest's size and digest; then the folder goes through the cache's own staging and
//! commit. A pull that was interrupted leaves its folder, and the next pull keeps every
//! file there that still matches its digest. The caller holds the entry's lock.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::meter::Meter;
use super::pool::{parallel_map, PARALLEL};
use super::transfer::Hashing;
use super::{blob_path, is_digest, manifest_path, PullOutcome, Remote, Transfer, Transfers, MANIFEST_LIMIT};
use crate::cache::digest::{hash_file, list_files};
use crate::cache::store::{OutputFile, MANIFEST};
use crate::cache::{EntryLock, Manifest};

/// Why an entry's download stopped.
enum Stop {
    /// A file does not match its digest: nothing of the entry is kept.
    Refused(String),
    /// The remote or the disk failed: the files checked so far stay for the next pull.
    Broken(String),
}

/// Download the remote's entry of `key` into the local cache (the caller holds the
/// entry's lock and found no local entry). `material` is the local key material
/// (canonical JSON): a manifest computed from anything else is refused, whatever key it
/// names. Any file that does not match its digest refuses the whole entry; nothing of a
/// refused entry stays behind. `label` names the entry in progress lines.
pub fn pull_entry(cx: &Transfers, lock: &EntryLock, material: &str, label: &str) -> Result<PullOutcome, String> {
    let key = lock.key.as_str();
    let start = Instant::now();
    let manifest = {
        let _slot = cx.slots.take();
        fetch_manifest(cx.remote, key, material)?
    };
    let Some(manifest) = manifest else { return Ok(PullOutcome::Absent) };
    let pulling = cx.cache.dir.join(format!("{key}.pulling"));
    std::fs::create_dir_all(&pulling).map_err(|e| format!("cannot prepare {}: {e}", pulling.display()))?;
    let received = download_outputs(cx, &manifest, &pulling, label).and_then(|t| {
        keep_only_outputs(&manifest, &pulling).map_err(Stop::Broken)?;
        let staging = cx
            .cache
            .staging(lock, true)
            .map_err(|e| Stop::Broken(format!("cannot prepare the staging folder: {e}")))?;
        std::fs::remove_dir(&staging)
            .and_then(|()| std::fs::rename(&pulling, &staging))
            .map_err(|e| Stop::Broken(format!("cannot move the pulled files into {}: {e}", staging.display())))?;
        cx.cache
            .commit(lock, manifest.clone())
            .map_err(|e| Stop::Broken(format!("cannot commit the pulled entry: {e}")))?;
        Ok(t)
    });
    let mut t = match received {
        Ok(t) => t,
        Err(Stop::Refused(why)) => {
            let _ = std::fs::remove_dir_all(&pulling);
            return Err(why);
        }
        Err(Stop::Broken(why)) => return Err(why),
    };
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

/// Every output into `into`, side by side; a file already there whole (an earlier pull's)
/// is kept. Stops taking new files once one fails.
fn download_outputs(cx: &Transfers, m: &Manifest, into: &Path, label: &str) -> Result<Transfer, Stop> {
    let outputs: Vec<(&String, &OutputFile)> = m.outputs.iter().collect();
    let meter = Meter::new(&cx.progress, format!("pull {label}"), m.total_size());
    let failed = AtomicBool::new(false);
    // Per file: `true` downloaded, `false` found whole; not tried (`None`) after a failure.
    let got = parallel_map(&outputs, PARALLEL, |(rel, out)| -> Option<Result<bool, Stop>> {
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let dest = into.join(rel);
        if is_whole(&dest, out) {
            meter.add(out.size);
            return Some(Ok(false));
        }
        let _slot = cx.slots.take();
        let result = download_one(cx.remote, rel, out, &dest, &meter).map(|()| true);
        failed.fetch_or(result.is_err(), Ordering::Relaxed);
        Some(result)
    });
    meter.finish();
    let mut t = Transfer::default();
    let mut broken = Vec::new();
    for (result, (_, out)) in got.into_iter().zip(&outputs) {
        match result {
            Some(Ok(true)) => {
                t.files += 1;
                t.bytes += out.size;
            }
            Some(Ok(false)) => t.skipped += 1,
            Some(Err(Stop::Refused(why))) => return Err(Stop::Refused(why)),
            Some(Err(Stop::Broken(why))) => broken.push(why),
            None => {}
        }
    }
    if broken.is_empty() {
        Ok(t)
    } else {
        Err(Stop::Broken(broken.join("; ")))
    }
}

/// Whether `path` is a regular file of the output's size and digest.
fn is_whole(path: &Path, out: &OutputFile) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == out.size)
        && hash_file(path).is_ok_and(|digest| digest == out.blake3)
}

fn download_one(remote: &Remote, rel: &str, out: &OutputFile, dest: &Path, meter: &Meter) -> Result<(), Stop> {
    let blob = blob_path(&out.blake3);
    let url = remote.backend().url(&blob);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Stop::Broken(format!("cannot create {}: {e}", dir.display())))?;
    }
    // Not through a link an earlier pull could not have left.
    let _ = std::fs::remove_file(dest);
    let file =
        std::fs::File::create(dest).map_err(|e| Stop::Broken(format!("cannot write {}: {e}", dest.display())))?;
    let mut sink = Hashing {
        inner: std::io::BufWriter::with_capacity(1 << 16, file),
        hasher: blake3::Hasher::new(),
        bytes: 0,
        received: &|n| meter.add(n),
    };
    if !remote.backend().get(&blob, &mut sink, out.size).map_err(Stop::Broken)? {
        return Err(Stop::Broken(format!("{url} (`{rel}`) is missing: the remote's entry is incomplete")));
    }
    sink.inner.flush().map_err(|e| Stop::Broken(format!("cannot write {}: {e}", dest.display())))?;
    let digest = sink.hasher.finalize().to_hex().to_string();
    if sink.bytes != out.size || digest != out.blake3 {
        return Err(Stop::Refused(format!("{url} (`{rel}`) does not match its digest: refused")));
    }
    Ok(())
}

/// Remove what an earlier pull of another version of the manifest left in the download
/// folder: the commit takes every file there as an output.
fn keep_only_outputs(m: &Manifest, dir: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    list_files(dir, Path::new(""), &mut files).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let wanted: BTreeSet<PathBuf> = m.outputs.keys().map(PathBuf::from).collect();
    for rel in files.iter().filter(|rel| !wanted.contains(*rel)) {
        let path = dir.join(rel);
        std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    Ok(())
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
