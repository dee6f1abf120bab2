//! `difflow cache ls [--remote]` and `difflow cache gc`: the cache folders of the given
//! pipelines, their entries and what a remote holds for them.

use std::path::{Path, PathBuf};

use difflow::cache::store::human_size;
use difflow::cache::Cache;
use difflow::exec::Session;
use difflow::project::settings::Settings;
use difflow::Failure;

use super::{load, session, wrong, Outcome};

/// The cache folders of the given pipelines (or of the current folder), each with the
/// sessions that use it.
fn caches_of(files: &[PathBuf]) -> Result<Vec<(Cache, Vec<Session>)>, Failure> {
    let mut out: Vec<(Cache, Vec<Session>)> = Vec::new();
    if files.is_empty() {
        let settings = difflow::project::settings::Settings::load(Path::new(".")).map_err(wrong)?;
        out.push((Cache::new(settings.cache), Vec::new()));
        return Ok(out);
    }
    for file in files {
        let (_, p) = load(file, &[])?;
        let s = session(file, &p)?;
        let dir = std::fs::canonicalize(&s.cache.dir).unwrap_or_else(|_| s.cache.dir.clone());
        match out.iter_mut().find(|(c, _)| c.dir == dir) {
            Some((_, list)) => list.push(s),
            None => out.push((Cache::new(dir), vec![s])),
        }
    }
    Ok(out)
}

pub(crate) fn cache_ls(files: &[PathBuf]) -> Outcome {
    for (cache, _) in caches_of(files)? {
        let keys = cache.keys().map_err(|e| wrong(format!("cannot read {}: {e}", cache.dir.display())))?;
        let keys: Vec<String> = keys.into_iter().filter(|k| cache.is_entry(k)).collect();
        println!("{} ({} entries)", cache.dir.display(), keys.len());
        let mut total = 0;
        for key in keys {
            let size = Cache::disk_size(&cache.entry_dir(&key)) + Cache::disk_size(&cache.staging_dir(&key));
            total += size;
            match cache.manifest(&key) {
                Some(m) => println!(
                    "{}  {:<10}  {:>9}  {}  {}",
                    &key[..12.min(key.len())],
                    m.kind,
                    human_size(size),
                    m.finished,
                    m.instances.join(", ")
                ),
                None => println!(
                    "{}  {:<10}  {:>9}  {:<20}  (incomplete: staging)",
                    &key[..12.min(key.len())],
                    "?",
                    human_size(size),
                    ""
                ),
            }
        }
        println!("total {}", human_size(total));
    }
    Ok(())
}

/// The entries of the remote of these pipelines (or of the current folder's settings).
pub(crate) fn cache_ls_remote(files: &[PathBuf]) -> Outcome {
    let sessions = caches_of(files)?.into_iter().flat_map(|(_, list)| list).collect::<Vec<_>>();
    let settings = match sessions.first() {
        Some(s) => s.settings.clone(),
        None => Settings::load(Path::new(".")).map_err(wrong)?,
    };
    let Some(remote) = settings.remote else {
        return Err(wrong("no remote: add `[remote]` with `url = \"…\"` to difflow.toml"));
    };
    let remote = difflow::remote::Remote::open(&remote).map_err(wrong)?;
    print!("{}", difflow::remote::run::list(&remote, &sessions).map_err(Failure::Failed)?);
    Ok(())
}

pub(crate) fn cache_gc(files: &[PathBuf]) -> Outcome {
    for (cache, sessions) in caches_of(files)? {
        let used: std::collections::BTreeSet<String> =
            sessions.iter().flat_map(|s| s.keys.keys.values().cloned()).collect();
        let keys = cache.keys().map_err(|e| wrong(format!("cannot read {}: {e}", cache.dir.display())))?;
        // Only difflow's own folders: a user's `results/cafe/` is no entry.
        let keys: Vec<String> = keys.into_iter().filter(|k| cache.is_entry(k)).collect();
        let (mut removed, mut freed, mut busy) = (0, 0, 0);
        for key in keys.iter().filter(|k| !used.contains(*k)) {
            let Some(lock) = cache.try_lock(key).map_err(|e| Failure::Failed(e.to_string()))? else {
                busy += 1;
                continue;
            };
            // Another running pipeline may be about to read it.
            let Some(_unread) = cache.try_lock_unread(key).map_err(|e| Failure::Failed(e.to_string()))? else {
                busy += 1;
                continue;
            };
            let size = Cache::disk_size(&cache.entry_dir(key)) + Cache::disk_size(&cache.staging_dir(key));
            cache.remove(&lock).map_err(|e| Failure::Failed(format!("cannot remove entry {key}: {e}")))?;
            let _ = std::fs::remove_file(cache.dir.join(format!("{key}.job.json")));
            drop(lock);
            removed += 1;
            freed += size;
        }
        // Leftovers of killed runs beside the entries kept (an unused entry's went above).
        let leftovers = difflow::exec::cleanup::remove_leftovers(&cache, None);
        let kept = keys.len() - removed - busy;
        print!(
            "{}: removed {removed} entr{} ({}), kept {kept}",
            cache.dir.display(),
            if removed == 1 { "y" } else { "ies" },
            human_size(freed)
        );
        if busy > 0 {
            print!(", skipped {busy} in use by a running difflow");
        }
        if leftovers > 0 {
            print!(", removed {leftovers} leftover{} of killed runs", if leftovers == 1 { "" } else { "s" });
        }
        println!();
    }
    Ok(())
}
