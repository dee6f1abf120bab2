//! Datasets: generators and decoders, and the on-disk artifact every dataset stage writes.

pub mod cifar10;
pub mod images;
pub mod limits;
pub mod mnist;
pub mod store;
pub mod toy;

pub use store::{DataMeta, DataType, Dataset};

/// The folder of a dataset that may be fetched: `difflow run` fills in `path` (the user's
/// or the fetched folder) before writing the job, so a job without one was not written by
/// it.
pub fn fetched_path<'a>(path: &'a Option<std::path::PathBuf>, dataset: &str) -> anyhow::Result<&'a std::path::Path> {
    path.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "the {dataset} job has no `path`: `difflow run` fills in the folder it fetched into; \
             run the pipeline with `difflow run`, or set `path`"
        )
    })
}
