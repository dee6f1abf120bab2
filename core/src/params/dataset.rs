//! The `dataset` kind: each variant's parameters, and what a declaration holds, known from
//! its variant and keys alone (shape, classes, examples): the checker judges stages by it,
//! `difflow show` prints it, the engine reads the same parameters.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which split of a fixed dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The keys of a dataset fetched from its canonical source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchedSplit {
    /// Unset in a pipeline: `difflow run` fills in the fetched folder.
    pub path: Option<PathBuf>,
    pub split: Split,
    pub limit: Option<usize>,
}

/// A job of a fetched dataset without its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFolder {
    pub dataset: String,
}

impl std::fmt::Display for NoFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} job has no `path`: `difflow run` fills in the folder it fetched into; \
             run the pipeline with `difflow run`, or set `path`",
            self.dataset
        )
    }
}

impl std::error::Error for NoFolder {}

impl FetchedSplit {
    /// The folder: `difflow run` fills in `path` (the user's or the fetched folder) before
    /// writing the job, so a job without one was not written by it.
    pub fn folder(&self, dataset: &str) -> Result<&Path, NoFolder> {
        self.path.as_deref().ok_or_else(|| NoFolder { dataset: dataset.to_string() })
    }
}

/// The parameters of an `mnist` or `fashion_mnist` dataset stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MnistParams {
    #[serde(flatten)]
    pub fetched: FetchedSplit,
    pub size: usize,
    /// Keep only labels 0…N−1.
    pub classes: usize,
}

/// `flip` is recorded in the dataset's meta; the training stages apply it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cifar10Params {
    #[serde(flatten)]
    pub fetched: FetchedSplit,
    pub flip: bool,
}

/// The parameters of an `images` dataset stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagesParams {
    pub path: PathBuf,
    /// Unset: the images' own size.
    pub size: Option<usize>,
    pub channels: usize,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyParams {
    pub shape: String,
    pub count: usize,
    pub noise: f64,
    pub seed: u64,
}

/// The parameters of a `dataset` stage, by variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum DatasetParams {
    Mnist(MnistParams),
    FashionMnist(MnistParams),
    Cifar10(Cifar10Params),
    Images(ImagesParams),
    Toy(ToyParams),
}

/// What a dataset declaration holds, known from its variant and keys alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    /// Vectors (toy points) rather than images.
    pub points: bool,
    /// Image channels, or the dimension of points.
    pub channels: i64,
    /// Image side in pixels (0 for points).
    pub size: i64,
    pub classes: i64,
}

/// Labels of a toy shape: gaussians8 has one label per mode, moons one per moon,
/// swissroll none.
pub fn toy_classes(shape: &str) -> i64 {
    match shape {
        "gaussians8" => 8,
        "moons" => 2,
        _ => 0,
    }
}

impl DatasetParams {
    /// The shape of the data (None for `images` without `size`: the files tell).
    pub fn shape(&self) -> Option<DataShape> {
        let images = |channels: usize, size: usize, classes: usize| DataShape {
            points: false,
            channels: channels as i64,
            size: size as i64,
            classes: classes as i64,
        };
        Some(match self {
            DatasetParams::Mnist(p) | DatasetParams::FashionMnist(p) => images(1, p.size, p.classes),
            DatasetParams::Cifar10(_) => images(3, 32, 10),
            DatasetParams::Images(p) => images(p.channels, p.size?, 0),
            DatasetParams::Toy(p) => DataShape { points: true, channels: 2, size: 0, classes: toy_classes(&p.shape) },
        })
    }

    /// Examples in the split of a fixed dataset.
    pub fn split_size(&self) -> Option<usize> {
        let split = match self {
            DatasetParams::Mnist(p) | DatasetParams::FashionMnist(p) => p.fetched.split,
            DatasetParams::Cifar10(p) => p.fetched.split,
            DatasetParams::Images(_) | DatasetParams::Toy(_) => return None,
        };
        Some(match (self, split) {
            (DatasetParams::Cifar10(_), Split::Train) => 50_000,
            (_, Split::Train) => 60_000,
            (_, Split::Test) => 10_000,
        })
    }

    /// The examples the stage holds, when known: the split's size or `limit`, whichever is
    /// smaller, or the toy points drawn.
    pub fn examples(&self) -> Option<usize> {
        let limit = match self {
            DatasetParams::Mnist(p) | DatasetParams::FashionMnist(p) => p.fetched.limit,
            DatasetParams::Cifar10(p) => p.fetched.limit,
            DatasetParams::Images(p) => p.limit,
            DatasetParams::Toy(p) => return Some(p.count),
        };
        match (limit, self.split_size()) {
            (Some(l), Some(k)) => Some(l.min(k)),
            (l, k) => l.or(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist(split: Split, limit: Option<usize>) -> DatasetParams {
        DatasetParams::Mnist(MnistParams { fetched: FetchedSplit { path: None, split, limit }, size: 28, classes: 10 })
    }

    #[test]
    fn shapes_and_examples_follow_the_variant_and_keys() {
        assert_eq!(mnist(Split::Test, None).examples(), Some(10_000));
        assert_eq!(mnist(Split::Train, Some(100)).examples(), Some(100));
        assert_eq!(mnist(Split::Train, Some(100_000)).examples(), Some(60_000));
        let shape = mnist(Split::Train, None).shape().unwrap();
        assert_eq!((shape.points, shape.channels, shape.size, shape.classes), (false, 1, 28, 10));
        let toy = DatasetParams::Toy(ToyParams { shape: "gaussians8".into(), count: 500, noise: 0.1, seed: 0 });
        assert_eq!((toy.examples(), toy.shape().unwrap().classes), (Some(500), 8));
        let folder = DatasetParams::Images(ImagesParams { path: "x".into(), size: None, channels: 3, limit: None });
        assert_eq!((folder.shape(), folder.examples()), (None, None));
        let err = FetchedSplit { path: None, split: Split::Train, limit: None }.folder("MNIST").unwrap_err();
        assert!(err.to_string().starts_with("the MNIST job has no `path`"), "{err}");
    }
}
