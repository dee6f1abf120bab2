//! The `dataset` stage: generate or decode the data and write the dataset artifact.

use anyhow::{bail, Result};
use difflow_core::job::Job;

use crate::data::store::DATA_FILE;
use crate::data::toy;
use crate::params::Params;
use crate::progress;

pub fn run(job: &Job) -> Result<()> {
    let params = Params::of_job(job);
    let dataset = match job.variant.as_str() {
        "toy" => toy::generate(
            params.str_or("shape", "moons")?,
            params.usize_or("count", 10_000)?,
            params.f64_or("noise", 0.05)?,
            params.usize_or("seed", 0)? as u64,
        )?,
        "mnist" => crate::data::mnist::from_params(&params, crate::data::mnist::Flavour::Mnist)?,
        "fashion_mnist" => crate::data::mnist::from_params(&params, crate::data::mnist::Flavour::Fashion)?,
        "cifar10" => crate::data::cifar10::from_params(&params)?,
        "images" => crate::data::images::from_params(&params)?,
        other => bail!("the dataset variant `{other}` is not available in this build of difflow-worker"),
    };
    dataset.write(&job.out_dir, DATA_FILE)?;
    progress::metric("count", dataset.meta.count as f64);
    Ok(())
}
