//! One module per stage kind (the `plot` kind lives in `crate::plot`, one module per
//! variant); `run` dispatches a job to it.

mod adamw;
mod checkpoint;
pub mod classifier;
pub mod continuation;
pub mod dataset;
pub mod describe;
pub mod export;
pub mod metrics;
pub mod nll;
pub mod pretrained;
pub mod sample;
pub mod stats;
pub mod train;

use anyhow::{bail, Context, Result};
use difflow_core::job::{Event, Job};

/// Small networks on vector data run fastest on one thread: their ops are too small to
/// gain from intra-op parallelism, and on a busy machine spinning threads cost up to 7×.
pub fn prefer_single_thread(job: &Job) {
    if job.settings.threads == 0 {
        tch::set_num_threads(1);
    }
}

/// Runs the stage that `job` describes, writing its outputs into `job.out_dir`.
pub fn run(job: &Job) -> Result<()> {
    let torch = crate::TORCH_VERSION.to_string();
    crate::progress::emit(&Event::Runtime { torch: torch.clone(), device: None, threads: None });
    run_stage(job)?;
    // What the stage actually ran on, for the entry's provenance (`auto` resolved, and the
    // thread count after a stage chose one for itself).
    let (device, threads) = (crate::device::used_name(), tch::get_num_threads().max(1) as usize);
    crate::progress::emit(&Event::Runtime { torch, device: Some(device), threads: Some(threads) });
    Ok(())
}

fn run_stage(job: &Job) -> Result<()> {
    if job.settings.threads > 0 {
        tch::set_num_threads(job.settings.threads as i32);
    }
    std::fs::create_dir_all(&job.out_dir)
        .with_context(|| format!("cannot create the output folder {}", job.out_dir.display()))?;
    match job.kind.as_str() {
        "dataset" => dataset::run(job),
        "classifier" => classifier::run(job),
        "describe" => describe::run(job),
        "export" => export::run(job),
        "pretrained" => pretrained::run(job),
        "train" => train::run(job),
        "sample" => sample::run(job),
        "plot" => crate::plot::run(job),
        "metrics" => metrics::run(job),
        "stats" => stats::run(job),
        "nll" => nll::run(job),
        // Reports read the lock file and other entries' manifests: the orchestrator writes
        // them in-process, whichever executor runs the other stages.
        "report" => bail!("report stages are written by `difflow run` itself, not by a worker"),
        other => bail!("unknown stage kind `{other}` in the job file (is difflow-worker older than difflow?)"),
    }
}
