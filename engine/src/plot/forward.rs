//! `plot … = forward { data, schedule, at = [t…] }`: the forward process q(x_t | x₀) on a
//! few images — one row per image, one column per t — with the same noise in every column,
//! so the columns show one path of the noising.

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::job::{Job, StageRef};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::grid::{auto_scale, grid_image};
use crate::data::store::to_uint8;
use crate::data::Dataset;
use crate::diffusion::{Process, VarianceType};
use crate::models::{ModelSpec, Prediction};
use crate::params::input;

/// Images shown (rows).
pub const ROWS: i64 = 8;

#[derive(Debug, Clone, Deserialize)]
pub struct ForwardParams {
    pub data: StageRef,
    pub schedule: serde_json::Value,
    /// Steps t to show (0 … T−1).
    pub at: Vec<i64>,
}

/// The noise is drawn from this seed: the figure is the same on every run.
const NOISE_SEED: i64 = 0;

pub fn run(job: &Job, params: &ForwardParams, out: &std::path::Path) -> Result<()> {
    let (name, data) = input(job, &params.data)?;
    let data = Dataset::read(&data.dir).with_context(|| format!("cannot read the data of `{name}`"))?;
    if !data.meta.is_images() {
        bail!("`{name}` holds vectors; the forward plot shows images");
    }
    let tables = ScheduleSpec::from_config(&params.schedule).map_err(|e| anyhow!(e))?.tables();
    let steps = tables.steps() as i64;
    let at = &params.at;
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
    tch::manual_seed(NOISE_SEED);
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
