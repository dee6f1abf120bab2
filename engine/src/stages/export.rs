//! `difflow export FILE STAGE --format diffusers --out DIR`: the worker half. Writes a
//! train (or pretrained) stage's EMA weights and schedule as a diffusers `DDPMPipeline`
//! folder: `model_index.json`, `unet/` (`config.json`, `diffusion_pytorch_model.safetensors`)
//! and `scheduler/scheduler_config.json`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::diffusers::config::{scheduler_config, unet_config};
use difflow_core::diffusers::{CONFIG_FILE, MODEL_INDEX_FILE, SCHEDULER_FILE, WEIGHTS_FILE};
use difflow_core::job::{Job, StageRef};
use serde::Deserialize;
use serde_json::json;
use tch::{Device, Tensor};

use crate::artifacts::TrainMeta;
use crate::models::diffusers::export_weights;
use crate::models::unet::UNetConfig;
use crate::params::{decode, input, job_params};

/// The diffusers version whose layout the folder follows (what `model_index.json` records).
const DIFFUSERS_VERSION: &str = "0.42.1";

#[derive(Debug, Clone, Deserialize)]
pub struct ExportParams {
    pub from: StageRef,
    pub format: String,
}

pub fn run(job: &Job) -> Result<()> {
    let params: ExportParams = job_params(job)?;
    if params.format != "diffusers" {
        bail!("unknown export format `{}` (available: diffusers)", params.format);
    }
    let (name, from) = input(job, &params.from)?;
    let meta = TrainMeta::read(&from.dir).with_context(|| format!("`{name}` is not a trained model"))?;
    if meta.edm.is_some() {
        bail!("`{name}` is an EDM-preconditioned net, which a diffusers UNet2DModel and DDPM scheduler cannot hold");
    }
    write_folder(&meta, &from.dir, &job.out_dir).with_context(|| format!("cannot export `{name}` to diffusers"))
}

/// Writes the pipeline folder of a finished train stage into `out`.
pub fn write_folder(meta: &TrainMeta, entry: &Path, out: &Path) -> Result<()> {
    if meta.model.get("variant").and_then(|v| v.as_str()) != Some("unet") {
        bail!("`model = {}` has no diffusers equivalent (UNet2DModel is a `unet`)", meta.model["variant"]);
    }
    let unet: UNetConfig = decode(&meta.model, "the model config")?;
    let [c, h, w] = meta.data.shape[..] else { bail!("a diffusers UNet2DModel needs image data") };
    if h != w {
        bail!("diffusers' DDPMPipeline draws square images, not {h}×{w}");
    }
    let spec = unet.spec;
    let classes = spec.classes as i64;
    let config = unet_config(&unet.net, c, h, classes, spec.learn_sigma).map_err(|e| anyhow!("{e}"))?;
    let (vs, _model) = meta.load_model(entry, true, Device::Cpu)?;
    let tensors = export_weights(&vs, &unet.net, h, classes > 0)?;
    let prediction = serde_json::to_value(spec.prediction)?;
    let scheduler = scheduler_config(&meta.schedule, prediction.as_str().unwrap_or("eps"), spec.learn_sigma);

    std::fs::create_dir_all(out.join("unet"))?;
    std::fs::create_dir_all(out.join("scheduler"))?;
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&named, out.join("unet").join(WEIGHTS_FILE))?;
    let mut config = config;
    config["_diffusers_version"] = json!(DIFFUSERS_VERSION);
    std::fs::write(out.join("unet").join(CONFIG_FILE), serde_json::to_string_pretty(&config)?)?;
    let mut scheduler = scheduler;
    scheduler["_diffusers_version"] = json!(DIFFUSERS_VERSION);
    std::fs::write(out.join("scheduler").join(SCHEDULER_FILE), serde_json::to_string_pretty(&scheduler)?)?;
    let index = json!({
        "_class_name": "DDPMPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    });
    std::fs::write(out.join(MODEL_INDEX_FILE), serde_json::to_string_pretty(&index)?)?;
    Ok(())
}
