//! The `dataset` stage: generate or decode the data and write the dataset artifact.

use anyhow::Result;
use difflow_core::job::Job;

use crate::data::mnist::Flavour;
use crate::data::store::DATA_FILE;
use crate::data::{cifar10, images, mnist, toy};
use crate::params::job_variant_params;
use crate::progress;

pub use difflow_core::params::dataset::{Cifar10Params, DatasetParams, ToyParams};

pub fn run(job: &Job) -> Result<()> {
    let dataset = match job_variant_params::<DatasetParams>(job)? {
        DatasetParams::Toy(p) => toy::generate(&p.shape, p.count, p.noise, p.seed)?,
        DatasetParams::Mnist(p) => mnist::from_params(&p, Flavour::Mnist)?,
        DatasetParams::FashionMnist(p) => mnist::from_params(&p, Flavour::Fashion)?,
        DatasetParams::Cifar10(p) => {
            let set = cifar10::load(p.fetched.folder("CIFAR-10")?, p.fetched.split.as_str())?;
            let set = match p.fetched.limit {
                Some(limit) => set.select(None, Some(limit))?,
                None => set,
            };
            set.into_dataset(p.flip)?
        }
        DatasetParams::Images(p) => images::from_params(&p)?,
    };
    dataset.write(&job.out_dir, DATA_FILE)?;
    progress::metric("count", dataset.meta.count as f64);
    Ok(())
}
