//! `plot … = forward { data, schedule, at = [t…] }`: the forward process q(x_t | x₀) on a
//! few images — one row per image, one column per t — with the same noise in every column,
//! so the columns show one path of the noising.

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::job::Job;
use tch::{Device, Kind, Tensor};

use super::grid::{auto_scale, grid_image};
use crate::data::store::to_uint8;
use crate::data::Dataset;
use crate::diffusion::{Process, VarianceType};
use crate::models::{ModelSpec, Prediction};
use crate::params::input;

/// Images shown (rows).
pub const ROWS: i64 = 8;

pub use difflow_core::params::plot::ForwardParams;

/// The noise is drawn from this seed: the figure is the same on every run.
const NOISE_SEED: i64 = 0;

pub fn run(job: &Job, params: &ForwardParams, out: &std::path::Path) -> Result<()> {
    let (name, data) = input(job, &params.data)?;
    let data = Dataset::read(&data.dir).with_context(|| format!("cannot read the data of `{name}`"))?;
    if !data.meta.is_images() {
        bail!("`{name}` holds vectors; the forward plot shows images");
    }
    params.schedule.validate().map_err(|e| anyhow!("the schedule: {e}"))?;
    params.check_at()?;
    let tables = params.schedule.tables();
    let at = &params.at;
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
