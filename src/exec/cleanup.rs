//! What a failed stage leaves behind. Its job file is always removed (it is rewritten by
//! every run). Its staging folder is removed too, except when it holds a training
//! checkpoint: hours of training are worth the disk space, and a rerun resumes from it
//! (`cache gc` removes it if the pipeline changes instead).

use crate::cache::{Cache, EntryLock};

/// Where a checkpointing stage keeps its resumable state (the engine's `checkpoint/`).
const CHECKPOINT_STATE: &str = "checkpoint/state.json";

/// Cleans up after the failure of the stage whose entry `lock` holds; returns a sentence
/// for the failure message (empty when there is nothing to say).
pub fn after_failure(cache: &Cache, lock: &EntryLock, resumable: bool) -> String {
    let staging = cache.staging_dir(&lock.key);
    if resumable && staging.join(CHECKPOINT_STATE).is_file() {
        return format!("\nits training checkpoint is kept in {}: a rerun resumes from it", staging.display());
    }
    match std::fs::remove_dir_all(&staging) {
        Ok(()) => String::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => format!("\n(its staging folder {} could not be removed: {e})", staging.display()),
    }
}

/// Removes what killed runs left beside the entries of `keys` (`None`: every key in the
/// cache) and no run can use: a job file, and a staging folder that is empty or sits
/// beside its complete entry (a run uses the entry; `--force` starts from a fresh folder).
/// A key is left alone while a process holds its lock or a Slurm job record names it (a
/// queued job reads its job file and writes into its staging folder without the lock), and
/// when it has no lock file: then these are not difflow's (a user's `beef.staging/`).
/// Returns how many files and folders were removed.
pub fn remove_leftovers(cache: &Cache, keys: Option<&[&str]>) -> usize {
    let candidates: Vec<String> = match keys {
        Some(keys) => keys.iter().map(|k| k.to_string()).collect(),
        None => leftover_keys(cache),
    };
    candidates.iter().map(|key| remove_leftovers_of(cache, key)).sum()
}

fn remove_leftovers_of(cache: &Cache, key: &str) -> usize {
    let staging = cache.staging_dir(key);
    let job_file = cache.dir.join(format!("{key}.job.json"));
    let record = cache.dir.join(format!("{key}.slurm.json"));
    let dead_staging = || staging.is_dir() && (is_empty_dir(&staging) || cache.is_complete(key));
    if record.exists() || !cache.lock_path(key).is_file() || !(job_file.is_file() || dead_staging()) {
        return 0;
    }
    let Ok(Some(_lock)) = cache.try_lock(key) else { return 0 };
    let mut removed = 0;
    if job_file.is_file() && std::fs::remove_file(&job_file).is_ok() {
        removed += 1;
    }
    if dead_staging() && std::fs::remove_dir_all(&staging).is_ok() {
        removed += 1;
    }
    removed
}

fn is_empty_dir(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Keys named by a staging folder or a job file in the cache folder.
fn leftover_keys(cache: &Cache) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&cache.dir) else { return Vec::new() };
    let mut keys: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".staging").or_else(|| name.strip_suffix(".job.json"))?.to_string();
            (!key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leftovers of a `--force` run killed outright: an empty staging folder and a job
    /// file beside a complete entry, plus a job file with no folder at all.
    fn killed_force_run(cache: &Cache, key: &str) {
        let lock = cache.lock(key, || {}).unwrap();
        cache.staging(&lock, true).unwrap();
        let m = crate::cache::Manifest {
            key: key.into(),
            kind: "sample".into(),
            variant: "default".into(),
            instances: vec!["gen".into()],
            started: String::new(),
            finished: String::new(),
            duration_s: 0.0,
            params: "{}".into(),
            key_material: "{}".into(),
            inputs: Default::default(),
            metrics: Default::default(),
            outputs: Default::default(),
            torch: String::new(),
            device: String::new(),
            threads: 0,
            difflow: String::new(),
        };
        cache.commit(&lock, m).unwrap();
        cache.staging(&lock, true).unwrap();
        std::fs::write(cache.dir.join(format!("{key}.job.json")), "{}").unwrap();
    }

    #[test]
    fn a_killed_runs_leftovers_go_unless_their_lock_or_a_slurm_job_holds_them() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        for key in ["aa01", "bb02", "cc03"] {
            killed_force_run(&cache, key);
        }
        std::fs::write(cache.dir.join("dd04.job.json"), "{}").unwrap();
        std::fs::write(cache.dir.join("dd04.lock"), "").unwrap();
        // A folder of the user's that merely looks like one: no lock file beside it.
        std::fs::create_dir_all(d.path().join("beef.staging")).unwrap();
        // An interrupted training run's checkpoint is what a rerun resumes from.
        std::fs::create_dir_all(cache.staging_dir("ee05").join("checkpoint")).unwrap();
        std::fs::write(cache.dir.join("ee05.lock"), "").unwrap();
        let held = cache.lock("bb02", || {}).unwrap();
        std::fs::write(cache.dir.join("cc03.slurm.json"), "{}").unwrap();

        assert_eq!(remove_leftovers(&cache, None), 3, "aa01's two, dd04's job file");
        assert!(!cache.staging_dir("aa01").exists() && !d.path().join("aa01.job.json").exists());
        assert!(cache.is_complete("aa01"), "the entry itself stays");
        assert!(!d.path().join("dd04.job.json").exists());
        assert!(cache.staging_dir("bb02").is_dir(), "its lock is held: a run is using it");
        assert!(cache.staging_dir("cc03").is_dir() && d.path().join("cc03.job.json").exists(), "a Slurm job's");
        assert!(cache.staging_dir("ee05").join("checkpoint").is_dir());
        assert!(d.path().join("beef.staging").is_dir(), "not difflow's");
        drop(held);
        assert_eq!(remove_leftovers(&cache, Some(&["bb02", "ee05"])), 2);
        assert!(!cache.staging_dir("bb02").exists());
    }
}
