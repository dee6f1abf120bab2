//! One module per stage kind; `run` dispatches a job to it.

pub mod classifier;
pub mod dataset;
pub mod describe;
pub mod metrics;
pub mod nll;
pub mod plot;
pub mod sample;
pub mod stats;
pub mod train;

use anyhow::{bail, Result};
use difflow::job::Job;

/// Runs the stage that `job` describes, writing its outputs into `job.out_dir`.
pub fn run(job: &Job) -> Result<()> {
    if job.settings.threads > 0 {
        tch::set_num_threads(job.settings.threads as i32);
    }
    match job.kind.as_str() {
        "dataset" => dataset::run(job),
        "classifier" => classifier::run(job),
        "describe" => describe::run(job),
        "train" => train::run(job),
        "sample" => sample::run(job),
        "plot" => plot::run(job),
        "metrics" => metrics::run(job),
        "stats" => stats::run(job),
        "nll" => nll::run(job),
        "report" => {
            bail!("the `{}` stage kind is not available in this build of difflow-worker yet", job.kind)
        }
        other => bail!("unknown stage kind `{other}` in the job file (is difflow-worker older than difflow?)"),
    }
}
