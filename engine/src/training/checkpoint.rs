//! Resumable training state, shared by the stages that train (`train`, `classifier`): a
//! `checkpoint/` folder in the staging folder with the step reached (`state.json`), the
//! loss log so far (`loss.csv`) and whatever weights and optimizer moments the stage
//! writes beside them. A checkpoint is written aside and renamed into place, so a kill
//! mid-write leaves the previous one; a checkpoint that cannot be used is discarded and
//! training starts over rather than blocking every rerun.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use difflow_core::files::{read_text, Purpose};
use serde::{Deserialize, Serialize};

use crate::progress;

use crate::artifacts::LOSS_FILE;
pub use difflow_core::job::CHECKPOINT_DIR;
pub use difflow_core::job::CHECKPOINT_STATE_FILE as STATE_FILE;

/// Saved training state: the step reached (`state.json`) and the loss log so far
/// (`loss.csv`, whose shortest-round-trip decimals read back exactly).
#[derive(Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub(crate) step: usize,
    #[serde(skip)]
    pub(crate) losses: Vec<f64>,
}

/// What a run killed while saving a checkpoint leaves: a partial `checkpoint.tmp` (removed,
/// so it does not hold disk space) and, when it died between the two renames, the previous
/// checkpoint as `checkpoint.old` (put back).
pub(crate) fn recover_leftovers(dir: &Path) -> Result<()> {
    let (tmp, old) = (dir.with_extension("tmp"), dir.with_extension("old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    if old.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&old)?;
        } else {
            std::fs::rename(&old, dir)?;
        }
    }
    Ok(())
}

/// Writes the checkpoint `dir`: `write_files` fills a folder beside it with the stage's
/// weights and moments, this adds the state and the loss log and renames it into place. A
/// write that fails (a full disk) removes its partial copy rather than leave the disk full.
pub(crate) fn save(dir: &Path, state: &CheckpointState, write_files: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp: PathBuf = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let written = std::fs::create_dir_all(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))
        .and_then(|()| write_files(&tmp))
        .and_then(|()| write_losses(&tmp.join(LOSS_FILE), &state.losses))
        .and_then(|()| Ok(std::fs::write(tmp.join(STATE_FILE), serde_json::to_string(state)?)?));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("cannot write the checkpoint {}", tmp.display())));
    }
    let old = dir.with_extension("old");
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The state and loss log of checkpoint `dir`; `context` names the checkpoint in errors.
pub(crate) fn load_state(dir: &Path, context: &dyn Fn() -> String) -> Result<CheckpointState> {
    let mut state: CheckpointState =
        serde_json::from_str(&read_text(&dir.join(STATE_FILE), Purpose::Metadata).with_context(context)?)
            .with_context(context)?;
    state.losses = read_losses(&dir.join(LOSS_FILE)).with_context(context)?;
    if state.losses.len() != state.step {
        bail!("{}: its loss log has {} rows for {} steps", context(), state.losses.len(), state.step);
    }
    Ok(state)
}

/// The step to start from and the losses so far: those of the checkpoint in `dir` that
/// `load` reads into the stage's `trainer` (weights, moments), else step 0. An unusable
/// checkpoint (unreadable, or past `steps`) is discarded and `restart` rebuilds `trainer`
/// from its seed (loading may have half-filled it).
pub(crate) fn resume<T>(
    dir: &Path,
    steps: usize,
    trainer: &mut T,
    load: impl FnOnce(&mut T, &Path) -> Result<CheckpointState>,
    restart: impl FnOnce(&mut T) -> Result<()>,
) -> Result<(usize, Vec<f64>)> {
    if !dir.join(STATE_FILE).exists() {
        return Ok((0, Vec::with_capacity(steps)));
    }
    match load(trainer, dir) {
        Ok(state) if state.step <= steps => {
            progress::log(format!("resuming from the checkpoint at step {}", state.step));
            Ok((state.step, state.losses))
        }
        unusable => {
            let why = match unusable {
                Ok(state) => format!("it is at step {}, past the {steps} steps asked for", state.step),
                Err(e) => format!("{:#}", e),
            };
            progress::log(format!("discarding the checkpoint ({why}); training from step 0"));
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove the unusable checkpoint {}", dir.display()))?;
            restart(trainer)?;
            Ok((0, Vec::with_capacity(steps)))
        }
    }
}

/// Whether a stop was asked for at this step boundary: when so, the checkpoint of `step`
/// (written by `save`, on the rank that writes) is in place and the stage should return the
/// error this gives.
pub(crate) fn stop_if_asked(step: usize, steps: usize, save: impl FnOnce() -> Result<()>) -> Result<()> {
    if !crate::interrupt::stop_requested() {
        return Ok(());
    }
    save()?;
    let message = format!("stopped at step {step} of {steps}; the checkpoint resumes from there");
    Err(crate::interrupt::Interrupted { message }.into())
}

pub(crate) fn write_losses(path: &Path, losses: &[f64]) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    writeln!(out, "step,loss")?;
    for (i, loss) in losses.iter().enumerate() {
        writeln!(out, "{},{loss}", i + 1)?;
    }
    out.flush()?;
    Ok(())
}

fn read_losses(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .skip(1)
        .map(|line| {
            let value = line.split(',').nth(1).with_context(|| format!("bad row `{line}`"))?;
            value.parse::<f64>().with_context(|| format!("bad loss in `{line}`"))
        })
        .collect()
}
