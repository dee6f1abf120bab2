//! The hidden `stats` stage (added by the orchestrator, one per input and extractor): the
//! features of one dataset or sample set under one extractor, and their statistics.
//! Writes `stats.safetensors` (float64 `mu` [D], `sigma` [D, D]) and `features.safetensors`
//! (f32 `features` [N, D] for KID and precision/recall, and the `logits` that go with them,
//! which IS reads), and `meta.json` (input, extractor, count, dimension). Every metrics
//! stage that measures this input reuses the entry, so changing the samples never
//! recomputes the reference's statistics.
//!
//! Data parallel (`--nproc N`, the `metrics` entry of the `nproc` setting): each rank
//! extracts the features of a contiguous share of the items; rank 0 gathers and writes.

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;

use crate::data::Dataset;
use crate::dist::{gather_rows, share, ProcessGroup};
use crate::metrics::entry::{extract_with_progress, write_entry};
use crate::metrics::features::{Extracted, Extractor};
use crate::params::{input, job_params};
use crate::progress;

pub use difflow_core::params::stats::StatsParams;

pub fn run(job: &Job) -> Result<()> {
    let params: StatsParams = job_params(job)?;
    // Data parallel: join the ranks' group; on CUDA each rank takes its own GPU.
    let (group, device) = ProcessGroup::from_env(crate::device::resolve(&job.device)?)?;
    let (name, of) = input(job, &params.of)?;
    let data = Dataset::read(&of.dir).with_context(|| format!("cannot read the items of `{name}`"))?;
    let extractor = Extractor::from_keys(job, &params.features, device)?;
    progress::log(format!("features of `{name}` ({} items) under {}", data.meta.count, extractor.describe()));
    let count = data.meta.count;
    let extracted = match &group {
        None => extract_with_progress(&extractor, &data.values)?,
        Some(group) => {
            let (lo, hi) = share(count, group.rank(), group.world_size());
            if lo == hi {
                bail!("{count} items of `{name}` cannot be split over {} processes", group.world_size());
            }
            let mine = extract_with_progress(&extractor, &data.values.narrow(0, lo as i64, (hi - lo) as i64))?;
            let features = gather_rows(group, &mine.features, lo, count, 0)?;
            let logits = gather_rows(group, &mine.logits, lo, count, 0)?;
            if group.rank() != 0 {
                return Ok(());
            }
            Extracted { features, logits }
        }
    };
    write_entry(&job.out_dir, &extracted)?;
    // For `difflow show` and people reading the cache: what these statistics describe.
    let meta = serde_json::json!({
        "of": name,
        "features": extractor.describe(),
        "count": data.meta.count,
        "dim": extracted.features.size()[1],
    });
    let meta_path = job.out_dir.join("meta.json");
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("cannot write {}", meta_path.display()))?;
    progress::metric("count", data.meta.count as f64);
    Ok(())
}
