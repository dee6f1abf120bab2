//! Pushing one entry: its files go up side by side, each skipped when the remote has its
//! blob already (so a push that was interrupted continues where it stopped), and the
//! manifest goes up last, only after every blob is there. The caller holds the entry's
//! lock.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::meter::Meter;
use super::pool::{parallel_map, PARALLEL};
use super::{blob_path, manifest_path, Transfer, Transfers};
use crate::cache::store::MANIFEST;

/// Upload the committed entry `key`; `Ok(None)` when the remote has its manifest and
/// every blob already. A remote that lost blobs of an entry gets them back. `label`
/// names the entry in progress lines (`train ddpm`).
pub fn push_entry(cx: &Transfers, key: &str, label: &str) -> Result<Option<Transfer>, String> {
    let m = cx.cache.verify(key).map_err(|e| format!("the local entry {key} cannot be pushed: {e}"))?;
    let backend = cx.remote.backend();
    let had_manifest = {
        let _slot = cx.slots.take();
        backend.exists(&manifest_path(key))?
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
        let result = backend.exists(&blob).and_then(|there| {
            if there {
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
