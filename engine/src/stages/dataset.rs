//! The `dataset` stage: generate or decode the data and write the dataset artifact.

use anyhow::Result;
use difflow_core::job::Job;
use serde::Deserialize;

use crate::data::images::ImagesParams;
use crate::data::mnist::{Flavour, MnistParams};
use crate::data::store::DATA_FILE;
use crate::data::{cifar10, images, mnist, toy, FetchedSplit};
use crate::params::job_variant_params;
use crate::progress;

/// The parameters of a `dataset` stage, by variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum DatasetParams {
    Mnist(MnistParams),
    FashionMnist(MnistParams),
    Cifar10(Cifar10Params),
    Images(ImagesParams),
    Toy(ToyParams),
}

/// `flip` is recorded in the dataset's meta; the training stages apply it.
#[derive(Debug, Clone, Deserialize)]
pub struct Cifar10Params {
    #[serde(flatten)]
    pub fetched: FetchedSplit,
    pub flip: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ToyParams {
    pub shape: String,
    pub count: usize,
    pub noise: f64,
    pub seed: u64,
}

pub fn run(job: &Job) -> Result<()> {
    let dataset = match job_variant_params::<DatasetParams>(job)? {
        DatasetParams::Toy(p) => toy::generate(&p.shape, p.count, p.noise, p.seed)?,
        DatasetParams::Mnist(p) => mnist::from_params(&p, Flavour::Mnist)?,
        DatasetParams::FashionMnist(p) => mnist::from_params(&p, Flavour::Fashion)?,
        DatasetParams::Cifar10(p) => {
            let set = cifar10::load(p.fetched.folder("CIFAR-10")?, &p.fetched.split)?;
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
