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
