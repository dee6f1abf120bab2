//! Pushing one entry: its files go up side by side, each skipped when the remote has its
//! blob already (so a push that was interrupted continues where it stopped), and the
//! manifest goes up last, only after every blob is there. The caller holds the entry's
//! lock.
//!
//! "Has" means whole: a blob of the manifest's size, a manifest that reads as this key's.
//! Folders, nginx and S3 itself store an upload all at once or not at all, but a server
//! that writes an object as it arrives (s3rver does) keeps the start of an upload that
//! was killed and serves it; such an object is sent again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::meter::Meter;
use super::pool::{parallel_map, PARALLEL};
use super::{blob_path, manifest_path, Backend, Transfer, Transfers, MANIFEST_LIMIT};
use crate::cache::store::MANIFEST;
use crate::cache::Manifest;

/// Upload the committed entry `key`; `Ok(None)` when the remote has its manifest and
/// every blob already. A remote that lost blobs of an entry gets them back. `label`
/// names the entry in progress lines (`train ddpm`).
pub fn push_entry(cx: &Transfers, key: &str, label: &str) -> Result<Option<Transfer>, String> {
    let m = cx.cache.verify(key).map_err(|e| format!("the local entry {key} cannot be pushed: {e}"))?;
    let backend = cx.remote.backend();
    let had_manifest = {
        let _slot = cx.slots.take();
        has_manifest(backend, key)?
    };
    let start = Instant::now();
    let dir = cx.cache.entry_dir(key);
    // One upload per blob: outputs with the same bytes share it.
    let mut seen = BTreeSet::new();
    let outputs: Vec<_> = m.outputs.iter().filter(|(_, out)| seen.insert(&out.blake3)).collect();
    let size = outputs.iter().map(|(_, out)| out.size).sum();
    let meter = Meter::new(&cx.progress, format!("push {label}"), size);
    let failed = AtomicBool::new(false);
    // Per file: `Some(bytes)` sent, `None` the remote had it; not tried (`None`) once
    // another file failed, since the manifest will not follow anyway.
    let sent = parallel_map(&outputs, PARALLEL, |(rel, out)| -> Option<Result<Option<u64>, String>> {
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let _slot = cx.slots.take();
        let blob = blob_path(&out.blake3);
        let result = backend.size(&blob).and_then(|stored| {
            if stored.is_some_and(|size| size.is_none_or(|size| size == out.size)) {
                meter.add(out.size);
                return Ok(None);
            }
            backend.put_counted(&blob, &dir.join(rel), out.size, &|n| meter.add(n)).map(|()| Some(out.size))
        });
        failed.fetch_or(result.is_err(), Ordering::Relaxed);
        Some(result)
    });
    meter.finish();
    let mut t = Transfer { skipped: m.outputs.len() - outputs.len(), ..Transfer::default() };
    let mut errors = Vec::new();
    for result in sent.into_iter().flatten() {
        match result {
            Ok(Some(size)) => {
                t.files += 1;
                t.bytes += size;
            }
            Ok(None) => t.skipped += 1,
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if had_manifest && t.files == 0 {
        return Ok(None);
    }
    let manifest = dir.join(MANIFEST);
    let size = std::fs::metadata(&manifest).map_err(|e| format!("cannot read {}: {e}", manifest.display()))?.len();
    {
        let _slot = cx.slots.take();
        backend.put(&manifest_path(key), &manifest, size)?;
    }
    t.secs = start.elapsed().as_secs_f64();
    Ok(Some(t))
}

/// Whether the remote holds a manifest of `key` that reads as one (not the start of an
/// upload that was killed, see the module's note).
fn has_manifest(backend: &dyn Backend, key: &str) -> Result<bool, String> {
    let mut bytes = Vec::new();
    if !backend.get(&manifest_path(key), &mut bytes, MANIFEST_LIMIT)? {
        return Ok(false);
    }
    let text = String::from_utf8(bytes).unwrap_or_default();
    Ok(toml::from_str::<Manifest>(&text).is_ok_and(|m| m.key == key))
}
