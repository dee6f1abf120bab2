//! The `describe` job (what `difflow show FILE MODEL` runs): builds a model on the CPU and
//! prints one JSON line on stdout:
//! `{"params": N, "levels": [{"resolution": 32, "channels": 128, "attention": false}, …]}`.
//! A `python` model's shape is not known without running it: it gets one forward pass on
//! two items of zeros, and its output's shape per item is `"output": [C, H, W]` (or `[D]`).
//!
//! Params ([`DescribeParams`]): `model` (the model config object), `shape` ([C, H, W] of
//! the data, or [D]) and `classes` (an encoder's outputs); `difflow show` fills all three.

use anyhow::{bail, Result};
use difflow_core::job::Job;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::data::{DataMeta, DataType};
use crate::models::unet::{levels, LevelInfo, UNetConfig};
use crate::models::ModelConfig;
use crate::models::{build_classifier, build_denoiser, Denoiser};
use crate::params::{decode, job_params};

/// The parameters of a `describe` job.
#[derive(Debug, Clone, Deserialize)]
pub struct DescribeParams {
    pub model: serde_json::Value,
    pub shape: Vec<i64>,
    pub classes: usize,
}

/// What `describe` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Description {
    pub params: i64,
    pub levels: Vec<LevelInfo>,
    /// A `python` model's output shape per item, from one forward pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<i64>>,
}

/// Builds the model of `config` for items of `shape` and counts its parameters.
pub fn describe(config: &serde_json::Value, shape: &[i64], classes: usize) -> Result<Description> {
    let model: ModelConfig = decode(config, "the model config")?;
    let images = shape.len() == 3;
    let meta = DataMeta {
        data_type: if images { DataType::Images } else { DataType::Points },
        shape: shape.to_vec(),
        classes,
        count: 0,
        flip: false,
    };
    let vars = nn::VarStore::new(Device::Cpu);
    // Building initialises the weights; no forward pass is needed for the count.
    let mut output = None;
    match &model {
        ModelConfig::Encoder(_) => drop(build_classifier(&vars.root(), config, &meta, classes)?),
        ModelConfig::Python(net) => {
            let denoiser = build_denoiser(&vars.root(), config, &meta)?;
            output = Some(python_output_shape(denoiser.as_ref(), shape, net.spec.classes)?);
        }
        _ => drop(build_denoiser(&vars.root(), config, &meta)?),
    }
    let count: i64 = vars.variables().values().map(|t| t.numel() as i64).sum();
    let levels = match &model {
        ModelConfig::Unet(unet) => levels(&unet.net, shape[1]),
        ModelConfig::Encoder(net) => levels(net, shape[1]),
        ModelConfig::Mlp(_) => Vec::new(),
        ModelConfig::Python(_) => Vec::new(),
    };
    Ok(Description { params: count, levels, output })
}

/// The output shape per item of one forward pass on two items of zeros at t = 0, with the
/// null class as their label when the model is conditional (the forward checks the shape).
fn python_output_shape(net: &dyn Denoiser, shape: &[i64], classes: usize) -> Result<Vec<i64>> {
    let mut batch = vec![2];
    batch.extend_from_slice(shape);
    let x = Tensor::zeros(batch.as_slice(), (Kind::Float, Device::Cpu));
    let t = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
    let y = (classes > 0).then(|| Tensor::full([2], classes as i64, (Kind::Int64, Device::Cpu)));
    let out = tch::no_grad(|| net.try_forward(&x, &t, y.as_ref(), false))?;
    Ok(out.size()[1..].to_vec())
}

pub fn run(job: &Job) -> Result<()> {
    let params: DescribeParams = job_params(job)?;
    let shape = &params.shape;
    if shape.is_empty() || shape.iter().any(|&d| d <= 0) {
        bail!("`shape` must be [C, H, W] (or [D]) with positive sizes, got {shape:?}");
    }
    let bytes = shape.iter().try_fold(4u64, |n, &d| n.checked_mul(d as u64));
    if bytes.is_none_or(|b| b > job.settings.limits.max_memory) {
        bail!("`shape` {shape:?} is larger than `max_memory_gib` allows for one item");
    }
    let description = describe(&params.model, shape, params.classes)?;
    println!("{}", serde_json::to_string(&description)?);
    Ok(())
}

/// The parameter count of a UNet config on `shape` (for tests and the bench).
pub fn unet_params(config: &UNetConfig, shape: [i64; 3]) -> Result<i64> {
    let value = serde_json::to_value(config)?;
    let mut value = value;
    value["variant"] = "unet".into();
    value["kind"] = "model".into();
    Ok(describe(&value, &shape, 0)?.params)
}
