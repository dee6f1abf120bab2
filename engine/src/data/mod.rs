//! Datasets: generators and decoders, and the on-disk artifact every dataset stage writes.

pub mod cifar10;
pub mod images;
pub mod limits;
pub mod mnist;
pub mod split;
pub mod store;
pub mod toy;

pub use store::{DataMeta, DataType, Dataset};

/// The keys of a dataset that may be fetched (mnist, fashion_mnist, cifar10): where it
/// is, which split, and how many examples to keep.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FetchedSplit {
    /// Unset in a pipeline: `difflow run` fills in the fetched folder.
    pub path: Option<std::path::PathBuf>,
    pub split: String,
    pub limit: Option<usize>,
}

impl FetchedSplit {
    /// The folder: `difflow run` fills in `path` (the user's or the fetched folder) before
    /// writing the job, so a job without one was not written by it.
    pub fn folder(&self, dataset: &str) -> anyhow::Result<&std::path::Path> {
        self.path.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "the {dataset} job has no `path`: `difflow run` fills in the folder it fetched into; \
                 run the pipeline with `difflow run`, or set `path`"
            )
        })
    }
}
