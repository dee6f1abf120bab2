//! The `pretrained` stage (variant `diffusers`): reads a diffusers `UNet2DModel` folder and
//! its scheduler config, and writes what a `train` stage writes (`meta.json`, EMA and raw
//! weights in difflow's layout), so every stage that reads a trained model reads it too.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use difflow_core::diffusers::{self, Pretrained};
use difflow_core::job::Job;
use serde_json::json;
use tch::{nn, Device};

use crate::artifacts::{TrainMeta, EMA_FILE, MODEL_FILE};
use crate::data::{DataMeta, DataType};
use crate::diffusion::loss::LossType;
use crate::models::{build_denoiser, diffusers::import_weights, ModelSpec};
use crate::params::job_params;
use crate::progress;

pub use difflow_core::params::pretrained::PretrainedParams;

/// The `model` config object of the difflow `unet` a folder maps onto (with its layout).
pub fn model_config(p: &Pretrained) -> serde_json::Value {
    let mut config = serde_json::to_value(&p.net.net).expect("a net serialises");
    let extra = json!({
        "kind": "model",
        "variant": "unet",
        "classes": p.net.classes,
        "learn_sigma": p.net.learn_sigma,
        "prediction": p.process.prediction,
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    config
}

pub fn run(job: &Job) -> Result<()> {
    let params: PretrainedParams = job_params(job)?;
    let dir = params.path.as_deref().ok_or_else(|| match &params.repo {
        Some(repo) => anyhow!("`{repo}` was not fetched (no local folder in the job)"),
        None => anyhow!("`{}` needs `path` or `repo`", job.instance),
    })?;
    let files = diffusers::locate(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let pretrained = diffusers::read(&files, &job.settings.limits).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let meta = convert(&pretrained, &files.weights, &job.out_dir)?;
    let schedule = meta.schedule_config.get("variant").and_then(|v| v.as_str()).unwrap_or("?").to_string();
    progress::log(format!(
        "read {} ({} classes; {} schedule of {} steps; predicts {})",
        dir.display(),
        meta.model_spec.classes,
        schedule,
        meta.schedule.steps(),
        pretrained.process.prediction
    ));
    Ok(())
}

/// Builds the difflow net, loads the folder's weights into it and writes the stage's outputs.
pub fn convert(p: &Pretrained, weights: &Path, out: &Path) -> Result<TrainMeta> {
    let model = model_config(p);
    let (c, s) = (p.net.in_channels, p.net.size);
    let data = DataMeta {
        data_type: DataType::Images,
        shape: vec![c, s, s],
        classes: p.net.classes as usize,
        count: 0,
        flip: false,
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = build_denoiser(&vs.root(), &model, &data)?;
    import_weights(&mut vs, &p.net.net, s, p.net.classes > 0, weights)?;
    vs.save(out.join(EMA_FILE)).context("cannot write the weights")?;
    // The raw weights are the same tensors: a link, not a second copy.
    let raw = out.join(MODEL_FILE);
    let _ = std::fs::remove_file(&raw);
    if std::fs::hard_link(out.join(EMA_FILE), &raw).is_err() {
        std::fs::copy(out.join(EMA_FILE), &raw).context("cannot write the raw weights")?;
    }
    let mut schedule_config = serde_json::to_value(&p.process.schedule)?;
    schedule_config["kind"] = json!("schedule");
    let meta = TrainMeta {
        model_spec: ModelSpec::from_config(&model)?,
        model,
        schedule_config,
        schedule: p.process.schedule.clone(),
        data,
        loss: LossType::Simple,
        steps: 0,
        final_loss: None,
        data_bound: None,
        edm: None,
    };
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    Ok(meta)
}
