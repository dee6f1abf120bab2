//! The `plot` stage: one PNG (or GIF) per variant.

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use tch::{Device, Kind};

use crate::data::Dataset;
use crate::params::Params;
use crate::plot::scatter::{write_scatter, Series};

pub const PLOT_FILE: &str = "plot.png";

pub fn run(job: &Job) -> Result<()> {
    match job.variant.as_str() {
        "scatter" => scatter(job),
        "grid" => crate::plot::grid::run(job, &job.out_dir.join(PLOT_FILE)),
        "forward" => crate::plot::forward::run(job, &job.out_dir.join(PLOT_FILE)),
        "trajectory" => crate::plot::trajectory::run(job, &job.out_dir.join(PLOT_FILE), &job.out_dir.join("plot.gif")),
        "schedules" => crate::plot::schedules::run(job, &job.out_dir.join(PLOT_FILE)),
        "loss" => crate::plot::loss::run(job, &job.out_dir.join(PLOT_FILE)),
        "curve" => crate::stages::metrics::curve_plot(job),
        other => bail!("the plot variant `{other}` is not available in this build of difflow-worker"),
    }
}

/// `plot … = scatter { of = [stages with 2-D points] }`.
fn scatter(job: &Job) -> Result<()> {
    let params = Params::of_job(job);
    let mut series = Vec::new();
    for (name, input) in params.stages(job, "of")? {
        let data = Dataset::read(&input.dir).with_context(|| format!("cannot read the points of `{name}`"))?;
        if data.meta.is_images() || data.meta.shape != [2] {
            bail!("`{name}` holds items of shape {:?}; a scatter plot needs 2-D points", data.meta.shape);
        }
        let flat: Vec<f32> = Vec::try_from(data.values.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        let points = flat.chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect();
        series.push(Series { name: name.to_string(), points });
    }
    let title = params.str_or("title", &job.instance)?;
    write_scatter(&series, title, 800, &job.out_dir.join(PLOT_FILE))
}
