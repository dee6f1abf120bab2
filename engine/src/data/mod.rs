//! Datasets: generators and decoders, and the on-disk artifact every dataset stage writes.

pub mod cifar10;
pub mod images;
pub mod limits;
pub mod mnist;
pub mod store;
pub mod toy;

pub use store::{DataMeta, DataType, Dataset};
