//! Networks behind two traits: [`Denoiser`] (what diffusion trains and samples) and
//! [`Classifier`] (logits of p(y | x_t) for classifier guidance, or of p(y | x) for features
//! and accuracy). `build_denoiser` / `build_classifier` dispatch on the config's variant.

pub mod diffusers;
pub mod encoder;
pub mod fused;
pub mod layers;
pub mod mlp;
#[cfg(feature = "python")]
pub mod python;
#[cfg(feature = "python")]
pub mod python_env;
#[cfg(feature = "python")]
pub mod python_shim;
pub mod unet;

use anyhow::{bail, Result};
use tch::{nn, Tensor};

use crate::data::DataMeta;
use crate::lanes::Lanes;
use crate::params::decode;

/// A denoising network ε_θ(x_t, t, y) (or its v / x₀ counterpart).
pub trait Denoiser: Send {
    /// `x`: [B, …data shape]; `t`: timesteps of the ORIGINAL schedule [B] (int64 or float);
    /// `y`: class labels int64 [B], where the value `classes` is the null class of
    /// classifier-free guidance (None for unconditional models); `train`: dropout on.
    /// Output: [B, C, …] with C = data channels, or 2·C with `learn_sigma` (prediction
    /// channels first, then the variance interpolation v ∈ [-1, 1]).
    fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor;

    /// `forward` for a network that can fail on user code (a Python model): the training
    /// step calls this one, so such a failure ends the stage as an error.
    fn try_forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Result<Tensor> {
        Ok(self.forward(x, t, y, train))
    }

    /// Whether `forward` with `train` on draws random numbers (dropout): the training step
    /// of such a network is not split into batch lanes, whose draws would interleave.
    fn draws_in_training(&self) -> bool {
        true
    }
}

/// The network in eval mode on a batch, each lane's share of the batch on its own thread
/// (see [`Lanes`]). `t` and `y` are per item.
pub fn evaluate(model: &dyn Denoiser, lanes: &Lanes, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Tensor {
    let share = |v: &Tensor, start: i64, length: i64| {
        if lanes.is_split(x) {
            v.narrow(0, start, length)
        } else {
            v.shallow_clone()
        }
    };
    // SAFETY: an eval-mode forward reads the weights and its inputs, and draws nothing.
    let mut parts = unsafe {
        lanes.run(x.size()[0], |start, length| {
            let y = y.map(|y| share(y, start, length));
            model.forward(&share(x, start, length), &share(t, start, length), y.as_ref(), false)
        })
    };
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        Tensor::cat(&parts, 0)
    }
}

/// Logits [B, classes] of a classifier on x (noisy x_t with `t` when trained with a schedule).
pub trait Classifier: Send {
    fn forward(&self, x: &Tensor, t: Option<&Tensor>, train: bool) -> Tensor;

    /// Pooled penultimate features [B, D] in eval mode (the logits are a linear map of
    /// them): the extractor of "classifier FID". None when the network has no such layer.
    fn features(&self, _x: &Tensor, _t: Option<&Tensor>) -> Option<Tensor> {
        None
    }
}

pub use difflow_core::params::model::{ModelConfig, ModelSpec, Prediction};

/// Builds the denoiser that `config` (a `model` config object) describes, for data `data`.
pub fn build_denoiser(root: &nn::Path, config: &serde_json::Value, data: &DataMeta) -> Result<Box<dyn Denoiser>> {
    match decode::<ModelConfig>(config, "the model config")? {
        ModelConfig::Mlp(mlp) => Ok(Box::new(mlp::Mlp::new(root, &mlp, data)?)),
        ModelConfig::Unet(unet) => Ok(Box::new(unet::UNet::from_config(root, &unet, data)?)),
        ModelConfig::Encoder(_) => bail!("the model variant `encoder` cannot denoise (available: unet, mlp, python)"),
        #[cfg(feature = "python")]
        ModelConfig::Python(net) => Ok(Box::new(python::PythonNet::new(root, &net, data)?)),
        #[cfg(not(feature = "python"))]
        ModelConfig::Python(_) => bail!("this worker was built without Python models (the engine's `python` feature)"),
    }
}

/// Builds the classifier that `config` describes, with `classes` outputs.
pub fn build_classifier(
    root: &nn::Path,
    config: &serde_json::Value,
    data: &DataMeta,
    classes: usize,
) -> Result<Box<dyn Classifier>> {
    match config.get("variant").and_then(serde_json::Value::as_str).unwrap_or("(none)") {
        "encoder" => Ok(Box::new(encoder::Encoder::from_config(root, config, data, classes)?)),
        other => bail!("the model variant `{other}` cannot classify (available: encoder)"),
    }
}

/// Sinusoidal timestep embedding [B, dim] (improved-diffusion's `timestep_embedding`, or
/// diffusers' `get_timestep_embedding` with its `flip_sin_to_cos` and `freq_shift`): cos
/// and sin of t·exp(−ln(10000)·i / (half − shift)) for i < half, padded with a zero column
/// when dim is odd. The operations run in the references' order, so the float32 results agree.
pub fn timestep_embedding(t: &Tensor, dim: i64, cos_first: bool, freq_shift: f64) -> Tensor {
    let half = dim / 2;
    let device = t.device();
    let exponent = Tensor::arange(half, (tch::Kind::Float, device)) * (-(10000f64.ln())) / (half as f64 - freq_shift);
    let args = t.to_kind(tch::Kind::Float).unsqueeze(1) * exponent.exp().unsqueeze(0);
    let emb =
        if cos_first { Tensor::cat(&[args.cos(), args.sin()], 1) } else { Tensor::cat(&[args.sin(), args.cos()], 1) };
    if dim % 2 == 1 {
        Tensor::cat(&[emb.shallow_clone(), emb.zeros_like().narrow(1, 0, 1)], 1)
    } else {
        emb
    }
}
