//! The protocol between the orchestrator (`difflow`) and the worker (`difflow-worker`):
//! a job file describing one stage instance completely, and the events the worker prints
//! on stdout, one JSON object per line. The worker never reads the `.diff` file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything a worker needs to run one stage instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The instance name, for messages (`gen[scale=0.5]`).
    pub instance: String,
    pub kind: String,
    pub variant: String,
    /// The instance's parameters ([`crate::value::Value::to_json`]): configs as
    /// objects with `kind` and `variant`, stage references as `{"$stage": NAME}`.
    pub params: serde_json::Value,
    /// The finished upstream stages, by instance name.
    pub inputs: BTreeMap<String, Input>,
    /// The staging folder to write outputs into. It survives an interrupted run of the
    /// same key, so a training stage finds its checkpoints here and resumes.
    pub out_dir: PathBuf,
    /// `cpu`, `cuda:N`, or `auto`: the worker resolves `auto` to `cuda:0` when libtorch
    /// finds CUDA, else `cpu` (only the worker links libtorch, so only it can tell).
    pub device: String,
    /// Project settings the engine needs.
    pub settings: JobSettings,
}

/// The folder of a train job's `out_dir` that holds its resumable checkpoint.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// The checkpoint's state file, `{"step": N}`: the steps it has done.
pub const CHECKPOINT_STATE_FILE: &str = "state.json";

/// The step a train job's `out_dir` (its staging folder) holds a checkpoint of, if any:
/// an interrupted run resumes there.
pub fn checkpoint_step(out_dir: &Path) -> Option<u64> {
    let state = out_dir.join(CHECKPOINT_DIR).join(CHECKPOINT_STATE_FILE);
    let text = crate::files::read_text(&state, crate::files::Purpose::Metadata).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get("step")?.as_u64()
}

/// The input name under which a `train` job gets the cached run it continues from (an
/// entry of the same training run with fewer steps): the worker starts from its weights,
/// EMA, optimiser moments and loss log instead of step 0.
pub const CONTINUE_INPUT: &str = "$continue";

/// The folder of a training entry that holds its live TensorBoard event files. They carry
/// wall-clock times, so they are left out of the output digests that runs compare.
pub const LOG_DIR: &str = "logs";

/// A reference to an upstream stage inside a job's parameters: `{"$stage": NAME}`, NAME
/// being a key of [`Job::inputs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRef {
    #[serde(rename = "$stage")]
    pub name: String,
}

impl Job {
    /// The finished upstream stage a reference names, or None for a stale or hand-written job.
    pub fn input(&self, stage: &StageRef) -> Option<(&str, &Input)> {
        self.inputs.get_key_value(&stage.name).map(|(name, input)| (name.as_str(), input))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub kind: String,
    pub variant: String,
    pub params: serde_json::Value,
    /// The committed cache entry of that stage.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobSettings {
    /// Default InceptionV3 weights (`pt_inception-2015-12-05`), from `difflow.toml`.
    pub inception_weights: Option<PathBuf>,
    /// Threads for CPU tensor work (0: libtorch's default).
    pub threads: usize,
    /// The largest model the worker builds from a config it did not get from the checker
    /// (a diffusers folder), from `difflow.toml`.
    #[serde(default)]
    pub limits: crate::net_size::SizeLimits,
}

/// What the worker prints on stdout, one per line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase with `total` units of work begins (`what`: "training", "sampling", …).
    Begin { what: String, total: u64 },
    /// `done` units of the current phase are finished; `loss` when training.
    Progress { done: u64, loss: Option<f64> },
    /// A line for the user.
    Log { message: String },
    /// A headline number for `difflow.lock` and `difflow show`.
    Metric { name: String, value: f64 },
    /// The libtorch the worker runs on (`2.13.0+cu130`), for the entry's provenance; after
    /// the stage, also the device it ran on (`cpu`, `cuda:0`: never `auto`) and the
    /// threads of CPU tensor work.
    Runtime {
        torch: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threads: Option<usize>,
    },
}

impl Event {
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events serialise")
    }
}

/// Exit status of a worker whose stage failed for a reason the user can fix (missing
/// data, NaN loss, …); its stderr holds the message. Anything else is a crash.
pub const WORKER_STAGE_FAILED: i32 = 2;

/// Exit status of a worker that stopped on request (SIGINT, SIGTERM, or Slurm's warning
/// signal SIGUSR1) at a step boundary after writing a checkpoint: the stage resumes from it
/// when it runs again. Stages without checkpoints just end with it.
pub const WORKER_INTERRUPTED: i32 = 3;
