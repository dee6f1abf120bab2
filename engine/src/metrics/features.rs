//! Feature extractors for the metrics: the FID InceptionV3 (`features = "inception"`) or a
//! trained `classifier` stage's pooled penultimate layer (`features = <classifier stage>`,
//! "classifier FID", better suited to MNIST than ImageNet features).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use tch::{Device, Kind, Tensor};

use super::inception::{self, InceptionV3, Precision};
use crate::artifacts::{load_classifier, LoadedClassifier};
use crate::data::store::to_unit_range;

/// The stats entry's file of per-item features (f32 `features` [N, D], and for Inception the
/// bias-free `logits` [N, 1008] that IS needs), beside `stats.safetensors`.
pub const FEATURES_FILE: &str = "features.safetensors";

/// Images per forward pass.
fn batch_size(device: Device) -> usize {
    if device.is_cuda() {
        200
    } else {
        32
    }
}

pub use difflow_core::params::metrics::{FeatureKeys, Features};

/// The Inception weights a stage uses: its own `inception_weights`, else `difflow.toml`'s.
pub fn inception_weights(job: &Job, keys: &FeatureKeys) -> Option<PathBuf> {
    keys.inception_weights.clone().or_else(|| job.settings.inception_weights.clone())
}

/// Loads the Inception network a stage asks for (float32: reference-comparable FID).
pub fn load_inception(job: &Job, keys: &FeatureKeys, device: Device) -> Result<InceptionV3> {
    let Some(path) = inception_weights(job, keys) else {
        bail!(inception::missing_weights_message(None));
    };
    InceptionV3::load(&path, device, Precision::F32)
}

/// Features (and the logits that go with them) of a set of images, f32 on the CPU.
pub struct Extracted {
    /// [N, D]
    pub features: Tensor,
    /// Inception's bias-free logits [N, 1008], or the classifier's logits [N, classes].
    pub logits: Tensor,
}

pub enum Extractor {
    Inception(InceptionV3),
    Classifier { name: String, classifier: LoadedClassifier, device: Device },
}

impl Extractor {
    /// The extractor named by the stage's `features` key.
    pub fn from_keys(job: &Job, keys: &FeatureKeys, device: Device) -> Result<Extractor> {
        match &keys.features {
            Features::Named(name) if name == "inception" => {
                Ok(Extractor::Inception(load_inception(job, keys, device)?))
            }
            Features::Stage(stage) => {
                let (name, input) = crate::params::input(job, stage)?;
                if input.kind != "classifier" {
                    bail!("`features = {name}` must name a classifier stage (it is a `{}` stage)", input.kind);
                }
                let classifier = load_classifier(&input.dir, device)
                    .with_context(|| format!("cannot load the classifier `{name}` used as feature extractor"))?;
                Ok(Extractor::Classifier { name: name.to_string(), classifier, device })
            }
            Features::Named(other) => bail!("`features` must be \"inception\" or a classifier stage, not {other:?}"),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Extractor::Inception(_) => "InceptionV3 pool3".to_string(),
            Extractor::Classifier { name, .. } => format!("the classifier `{name}`"),
        }
    }

    /// Features of uint8 images [N, C, H, W]; `progress(done)` after each batch.
    pub fn extract(&self, images: &Tensor, progress: impl FnMut(usize)) -> Result<Extracted> {
        if images.kind() != Kind::Uint8 || images.dim() != 4 {
            bail!(
                "feature extraction needs images (uint8 [N, C, H, W]), got {:?} of shape {:?}: metrics with \
                 Inception or classifier features apply to image data, not to points",
                images.kind(),
                images.size()
            );
        }
        match self {
            Extractor::Inception(net) => {
                let out = net.extract(images, batch_size(net.device()), progress)?;
                Ok(Extracted { features: out.pool3, logits: out.logits })
            }
            Extractor::Classifier { name, classifier, device } => {
                classifier_features(name, classifier, images, *device, progress)
            }
        }
    }
}

fn classifier_features(
    name: &str,
    classifier: &LoadedClassifier,
    images: &Tensor,
    device: Device,
    mut progress: impl FnMut(usize),
) -> Result<Extracted> {
    let expected = &classifier.meta.data.shape;
    if images.size()[1..] != expected[..] {
        bail!(
            "the classifier `{name}` was trained on items of shape {expected:?}, but these images are {:?}",
            &images.size()[1..]
        );
    }
    let n = images.size()[0];
    let batch = batch_size(device) as i64 * 4;
    let (mut features, mut logits) = (Vec::new(), Vec::new());
    tch::no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start);
            let x = to_unit_range(&images.narrow(0, start, len).to_device(device));
            let Some(f) = classifier.net.features(&x, None) else {
                bail!("the classifier `{name}` has no feature layer to use for metrics");
            };
            logits.push(classifier.net.forward(&x, None, false).to_kind(Kind::Float).to_device(Device::Cpu));
            features.push(f.to_kind(Kind::Float).to_device(Device::Cpu));
            start += len;
            progress(start as usize);
        }
        Ok(())
    })?;
    if features.is_empty() {
        bail!("no images to extract features from");
    }
    Ok(Extracted { features: Tensor::cat(&features, 0), logits: Tensor::cat(&logits, 0) })
}

/// Extractors loaded on first use (the Inception weights are 95 MB).
pub struct Extractors<'a> {
    job: &'a Job,
    keys: &'a FeatureKeys,
    device: Device,
    main: Option<Extractor>,
    inception: Option<InceptionV3>,
}

impl<'a> Extractors<'a> {
    pub fn new(job: &'a Job, keys: &'a FeatureKeys, device: Device) -> Self {
        Extractors { job, keys, device, main: None, inception: None }
    }

    /// The extractor of `features` (Inception or a classifier).
    pub fn main(&mut self) -> Result<&Extractor> {
        if self.main.is_none() {
            self.main = Some(Extractor::from_keys(self.job, self.keys, self.device)?);
        }
        Ok(self.main.as_ref().unwrap())
    }

    /// InceptionV3 for IS, whatever `features` says.
    pub fn inception(&mut self) -> Result<&InceptionV3> {
        if let Some(Extractor::Inception(net)) = &self.main {
            return Ok(net);
        }
        if self.inception.is_none() {
            self.inception = Some(load_inception(self.job, self.keys, self.device)?);
        }
        Ok(self.inception.as_ref().unwrap())
    }

    pub fn features_are_inception(&self) -> bool {
        matches!(&self.keys.features, Features::Named(name) if name == "inception")
    }
}
