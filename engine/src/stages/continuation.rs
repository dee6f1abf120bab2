//! Continuing a cached training run: a `train` job whose inputs include
//! [`CONTINUE_INPUT`] (an entry of the same training with fewer steps) starts from that
//! entry's final state. A finished entry keeps everything a checkpoint does (raw and EMA
//! weights, AdamW moments, the loss log; batches and noise come from (seed, step)), so it
//! is laid out as the staging folder's checkpoint and training resumes from it exactly as
//! from an interrupted run of its own.

use std::path::Path;

use anyhow::{bail, Context, Result};
use difflow_core::job::{Job, CONTINUE_INPUT, LOG_DIR};

use crate::artifacts::{TrainMeta, EMA_FILE, LOSS_FILE, MODEL_FILE, OPTIMIZER_FILE};
use crate::progress;
use crate::training::checkpoint::{CHECKPOINT_DIR, STATE_FILE};

/// Lays the continued run's state out as `out_dir/checkpoint`, unless a checkpoint an
/// interrupted run of this job left there is already as far along. `target`: the steps
/// this job trains to.
pub fn seed_checkpoint(job: &Job, target: usize) -> Result<()> {
    let Some(source) = job.inputs.get(CONTINUE_INPUT) else { return Ok(()) };
    let from = TrainMeta::read(&source.dir)?.steps;
    if from >= target {
        bail!("cannot continue a run of {from} steps to {target} steps: it is already as long");
    }
    let checkpoint = job.out_dir.join(CHECKPOINT_DIR);
    if difflow_core::job::checkpoint_step(&job.out_dir).is_some_and(|step| step >= from as u64) {
        return Ok(());
    }
    let tmp = checkpoint.with_extension("seed");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    for file in [MODEL_FILE, EMA_FILE, OPTIMIZER_FILE, LOSS_FILE] {
        let (src, dst) = (source.dir.join(file), tmp.join(file));
        std::fs::copy(&src, &dst)
            .with_context(|| format!("cannot continue from {}: cannot copy {file}", source.dir.display()))?;
    }
    std::fs::write(tmp.join(STATE_FILE), serde_json::json!({ "step": from }).to_string())?;
    copy_logs(&source.dir.join(LOG_DIR), &job.out_dir.join(LOG_DIR))?;
    if checkpoint.exists() {
        std::fs::remove_dir_all(&checkpoint)?;
    }
    std::fs::rename(&tmp, &checkpoint)?;
    progress::log(format!("continuing the cached run of {from} steps (from {})", source.dir.display()));
    Ok(())
}

/// The continued run's event files, so that its live log shows the whole curve from step 1.
fn copy_logs(from: &Path, to: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else { return Ok(()) };
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in entries {
        let entry = entry?;
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_file() && !dst.exists() {
            std::fs::copy(entry.path(), &dst).with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}
