//! The `describe` job (what `difflow show FILE MODEL` runs): builds a model on the CPU,
//! without any forward pass, and prints one JSON line on stdout:
//! `{"params": N, "levels": [{"resolution": 32, "channels": 128, "attention": false}, …]}`.
//!
//! Params: `model` (the model config object); optional `shape` ([C, H, W] of the data,
//! default [3, 32, 32], or [2] for an `mlp`) and `classes` (an encoder's outputs, default 10).

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use serde::Serialize;
use tch::{nn, Device};

use crate::data::{DataMeta, DataType};
use crate::models::unet::{levels, LevelInfo, UNetConfig};
use crate::models::{build_classifier, build_denoiser};
use crate::params::Params;

/// What `describe` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Description {
    pub params: i64,
    pub levels: Vec<LevelInfo>,
}

/// Builds the model of `config` for items of `shape` and counts its parameters.
pub fn describe(config: &serde_json::Value, shape: &[i64], classes: usize) -> Result<Description> {
    let params = Params::new(config, "model");
    let variant = params.variant()?;
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
    match variant {
        "encoder" => drop(build_classifier(&vars.root(), config, &meta, classes)?),
        _ => drop(build_denoiser(&vars.root(), config, &meta)?),
    }
    let count: i64 = vars.variables().values().map(|t| t.numel() as i64).sum();
    let levels = match variant {
        "unet" | "encoder" => {
            let mut plain = config.clone();
            if let Some(map) = plain.as_object_mut() {
                map.retain(|k, _| ["channels", "mults", "attention"].contains(&k.as_str()));
            }
            let channels = plain.get("channels").and_then(|v| v.as_i64()).context("the model has no `channels`")?;
            let mults: Vec<i64> = serde_json::from_value(plain.get("mults").cloned().unwrap_or_default())
                .context("the model's `mults` must be a list of integers")?;
            let attention: Vec<i64> =
                serde_json::from_value(plain.get("attention").cloned().unwrap_or(serde_json::json!([])))
                    .context("the model's `attention` must be a list of integers")?;
            levels(channels, &mults, &attention, shape[1])
        }
        _ => Vec::new(),
    };
    Ok(Description { params: count, levels })
}

pub fn run(job: &Job) -> Result<()> {
    let params = Params::of_job(job);
    let config = params.raw().get("model").context("`describe` needs `model`")?;
    let shape: Vec<i64> = match params.get("shape") {
        Some(v) => serde_json::from_value(v.clone()).context("`shape` must be a list of integers")?,
        // Without data: 3 × 32 × 32 images, or 2-D points for an `mlp` (the toy data).
        None if Params::new(config, "model").variant()? == "mlp" => vec![2],
        None => vec![3, 32, 32],
    };
    if shape.is_empty() || shape.iter().any(|&d| d <= 0) {
        bail!("`shape` must be [C, H, W] (or [D]) with positive sizes, got {shape:?}");
    }
    let classes = params.usize_or("classes", 10)?;
    let description = describe(config, &shape, classes)?;
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
