//! `plot … = forward { data, schedule, at = [t…] }`: the forward process q(x_t | x₀) on a
//! few images — one row per image, one column per t — with the same noise in every column,
//! so the columns show one path of the noising.

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use tch::{Device, Kind, Tensor};

use super::grid::{auto_scale, grid_image};
use crate::data::store::to_uint8;
use crate::data::Dataset;
use crate::diffusion::{schedule_from_config, Process, VarianceType};
use crate::models::{ModelSpec, Prediction};
use crate::params::Params;

/// Images shown (rows).
pub const ROWS: i64 = 8;

pub fn run(job: &Job, out: &std::path::Path) -> Result<()> {
    super::grid::create_parent(out)?;
    let params = Params::of_job(job);
    let (name, input) = params.stage(job, "data")?;
    let data = Dataset::read(&input.dir).with_context(|| format!("cannot read the data of `{name}`"))?;
    if !data.meta.is_images() {
        bail!("`{name}` holds vectors; the forward plot shows images");
    }
    let tables = schedule_from_config(&params.config("schedule")?)?.tables();
    let steps = tables.steps() as i64;
    let at: Vec<i64> = match params.get("at") {
        Some(v) => serde_json::from_value(v.clone()).context("`at` must be a list of steps")?,
        None => vec![0, steps / 4, steps / 2, 3 * steps / 4, steps - 1],
    };
    if at.is_empty() {
        bail!("`at` lists no steps");
    }
    if let Some(bad) = at.iter().find(|&&t| t < 0 || t >= steps) {
        bail!("`at` holds the step {bad}, but the schedule has steps 0 … {}", steps - 1);
    }
    let spec = ModelSpec { classes: 0, learn_sigma: false, prediction: Prediction::Eps };
    let process =
        Process::new(tables, spec, VarianceType::FixedSmall, crate::diffusion::DataSpace::images(), Device::Cpu);
    let rows = ROWS.min(data.meta.count as i64);
    let (x0, _) = data.batch(&Tensor::arange(rows, (Kind::Int64, Device::Cpu)), Device::Cpu);
    tch::manual_seed(params.usize_or("seed", 0)? as i64);
    let noise = x0.randn_like();
    // [rows, columns, C, H, W] → rows of the grid.
    let columns: Vec<Tensor> = at
        .iter()
        .map(|&t| process.q_sample(&x0, &Tensor::full([rows], t, (Kind::Int64, Device::Cpu)), &noise))
        .collect();
    let grid = to_uint8(&Tensor::stack(&columns, 1).flatten(0, 1));
    let img = grid_image(&grid, at.len(), auto_scale(data.meta.shape[1]))?;
    img.save(out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}
