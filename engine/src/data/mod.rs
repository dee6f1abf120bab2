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
pub use difflow_core::params::dataset::FetchedSplit;
