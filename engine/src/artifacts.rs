//! The files a stage leaves in its cache entry that other stages read back: a train
//! stage's description and weights ([`TrainMeta`]) and a classifier stage's
//! ([`ClassifierMeta`]). A dataset's format lives with the data (`crate::data::DataMeta`).

use std::path::Path;

use anyhow::{Context, Result};
use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::files::{read_text, Purpose};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

use crate::data::DataMeta;
use crate::diffusion::loss::LossType;
use crate::diffusion::DataSpace;
use crate::models::{build_classifier, build_denoiser, Classifier, Denoiser, ModelSpec};

/// The description file of a train or classifier entry.
pub const META_FILE: &str = "meta.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const EMA_FILE: &str = "ema.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The loss log (`step,loss` lines) of a training entry and of its checkpoint.
pub const LOSS_FILE: &str = "loss.csv";
/// The weights file of a classifier stage.
pub const CLASSIFIER_FILE: &str = "classifier.safetensors";

/// What a train stage records in `meta.json`: enough to rebuild the model and its process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainMeta {
    /// The `model` config object.
    pub model: serde_json::Value,
    pub model_spec: ModelSpec,
    /// The `schedule` config object and the spec built from it.
    pub schedule_config: serde_json::Value,
    pub schedule: ScheduleSpec,
    pub data: DataMeta,
    pub loss: LossType,
    pub steps: usize,
    /// None for a pretrained model (its training loss is not known).
    pub final_loss: Option<f64>,
    /// The largest |value| of vector training data (x̂₀ is clipped to it while sampling).
    #[serde(default)]
    pub data_bound: Option<f64>,
    /// The net's EDM preconditioning (None: it predicts the schedule's ε, v or x₀).
    #[serde(default)]
    pub edm: Option<difflow_core::params::train::Edm>,
}

impl TrainMeta {
    pub fn read(dir: &Path) -> Result<TrainMeta> {
        let path = dir.join(META_FILE);
        let text = read_text(&path, Purpose::Metadata).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a train stage's description", path.display()))
    }

    /// The data space the model was trained in (clipping range and decoder).
    pub fn data_space(&self) -> DataSpace {
        if self.data.is_images() {
            DataSpace::images()
        } else {
            DataSpace::points(self.data_bound)
        }
    }

    /// Builds the model and loads the EMA (or raw) weights of a finished train stage.
    pub fn load_model(&self, dir: &Path, use_ema: bool, device: Device) -> Result<(nn::VarStore, Box<dyn Denoiser>)> {
        let mut vs = nn::VarStore::new(device);
        let model = build_denoiser(&vs.root(), &self.model, &self.data)?;
        let path = dir.join(if use_ema { EMA_FILE } else { MODEL_FILE });
        vs.load(&path).with_context(|| format!("cannot load weights from {}", path.display()))?;
        Ok((vs, model))
    }
}

/// What a classifier stage records in its `meta.json`, so guidance and metrics can rebuild it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierMeta {
    /// The `model` config object (variant `encoder`).
    pub model: serde_json::Value,
    /// The `schedule` config object it was trained on (noisy classifier), or null (clean).
    pub schedule: Option<serde_json::Value>,
    pub classes: usize,
    /// The data it was trained on.
    pub data: DataMeta,
    /// Held-out accuracy.
    #[serde(default)]
    pub accuracy: Option<f64>,
}

/// A trained classifier, ready for inference (eval mode: `train = false`).
pub struct LoadedClassifier {
    pub net: Box<dyn Classifier>,
    pub meta: ClassifierMeta,
    /// Owns the weights (kept alive with the net).
    pub vars: nn::VarStore,
}

/// Loads the classifier of a classifier stage's entry `dir` onto `device`.
pub fn load_classifier(dir: &Path, device: Device) -> Result<LoadedClassifier> {
    let meta_path = dir.join(META_FILE);
    let text =
        read_text(&meta_path, Purpose::Metadata).with_context(|| format!("cannot read {}", meta_path.display()))?;
    let meta: ClassifierMeta = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a classifier description", meta_path.display()))?;
    let mut vars = nn::VarStore::new(device);
    let net = build_classifier(&vars.root(), &meta.model, &meta.data, meta.classes)?;
    let weights = dir.join(CLASSIFIER_FILE);
    vars.load(&weights).with_context(|| format!("cannot load the classifier weights {}", weights.display()))?;
    vars.freeze();
    Ok(LoadedClassifier { net, meta, vars })
}
