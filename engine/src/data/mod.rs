//! Datasets: generators and decoders, and the on-disk artifact every dataset stage writes.

pub mod store;
pub mod toy;

pub use store::{DataMeta, DataType, Dataset};
