//! Speed of difflow's UNet on the CPU, side by side with `bench/unet_reference.py` (run
//! both with `bench/run_unet_bench.sh`):
//!
//! (a) a training step — difflow's real `train` stage (data batch, label dropout, q_sample,
//!     forward, ε-MSE, backward, gradient clipping, AdamW, EMA), timed as the difference
//!     between a run of `warmup + steps` steps and a run of `warmup` steps, so that model
//!     building and writing the outputs cancel out;
//! (b) DDIM sampling with classifier-free guidance — difflow's sampler
//!     (`diffusion::sampler::SampleSetup`, one batched forward for both halves).
//!
//!     cargo run --release -p difflow-engine --example unet_bench -- --config '{"size": 16}' --threads 2
//!
//! Prints one JSON line: {"params", "train_step_ms", "ddim_cfg_s"}.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::job::{Input, Job, JobSettings};
use difflow_engine::data::{DataMeta, DataType, Dataset};
use difflow_engine::diffusion::noise::SampleNoise;
use difflow_engine::diffusion::sampler::{Guidance, SampleSetup, Sampler};
use difflow_engine::diffusion::DataSpace;
use difflow_engine::models::unet::{UNet, UNetConfig};
use difflow_engine::models::{ModelSpec, Prediction};
use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};

struct Args {
    config: Value,
    threads: i32,
    batch: usize,
    warmup: usize,
    train_steps: usize,
    sample_count: i64,
    ddim_steps: usize,
    scale: f64,
    /// Skip the training measurement (sampling only).
    sample_only: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        config: json!({}),
        threads: 2,
        batch: 32,
        warmup: 3,
        train_steps: 10,
        sample_count: 16,
        ddim_steps: 10,
        scale: 2.0,
        sample_only: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).with_context(|| format!("{} needs a value", argv[i]))?;
        match argv[i].as_str() {
            "--config" => args.config = serde_json::from_str(value).context("--config must be JSON")?,
            "--threads" => args.threads = value.parse()?,
            "--batch" => args.batch = value.parse()?,
            "--warmup" => args.warmup = value.parse()?,
            "--train-steps" => args.train_steps = value.parse()?,
            "--sample-count" => args.sample_count = value.parse()?,
            "--ddim-steps" => args.ddim_steps = value.parse()?,
            "--scale" => args.scale = value.parse()?,
            "--sample-only" => args.sample_only = value.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
        i += 2;
    }
    Ok(args)
}

/// The reference script's defaults (Ho et al.'s CIFAR-10 net), overridden by `--config`.
fn configuration(overrides: &Value) -> Value {
    let mut cfg = json!({"in_ch": 3, "size": 32, "channels": 128, "mults": [1, 2, 2, 2], "res_blocks": 2,
                         "attention": [16], "heads": 1, "dropout": 0.1, "scale_shift": false, "classes": 0,
                         "learn_sigma": false});
    for (k, v) in overrides.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    cfg
}

fn train_job(model: &Value, data_dir: &std::path::Path, out: &std::path::Path, steps: usize, a: &Args) -> Job {
    let mut inputs = BTreeMap::new();
    inputs.insert(
        "data".to_string(),
        Input { kind: "dataset".into(), variant: "images".into(), params: json!({}), dir: data_dir.to_path_buf() },
    );
    let classes = model["classes"].as_i64().unwrap_or(0);
    Job {
        instance: "bench".into(),
        kind: "train".into(),
        variant: "diffusion".into(),
        params: difflow_core::schema::with_defaults(
            "train",
            "diffusion",
            &json!({
                "model": model, "data": {"$stage": "data"},
                "schedule": {"kind": "schedule", "variant": "cosine", "steps": 1000},
                "loss": "simple", "uncond_p": if classes > 0 { 0.1 } else { 0.0 }, "steps": steps, "batch": a.batch,
                "lr": 1e-4, "warmup": 0, "grad_clip": 1.0, "ema": 0.999, "seed": 0, "precision": "fp32",
                "checkpoint_every": 1_000_000
            }),
        ),
        inputs,
        out_dir: out.to_path_buf(),
        device: "cpu".into(),
        settings: JobSettings { inception_weights: None, threads: a.threads as usize },
    }
}

fn main() -> Result<()> {
    let a = parse_args()?;
    tch::set_num_threads(a.threads);
    let cfg = configuration(&a.config);
    let (in_ch, size) = (cfg["in_ch"].as_i64().unwrap(), cfg["size"].as_i64().unwrap());
    let classes = cfg["classes"].as_i64().unwrap();
    let mut model = cfg.clone();
    model["kind"] = "model".into();
    model["variant"] = "unet".into();
    let model = difflow_core::schema::with_defaults("model", "unet", &model);
    let unet_cfg: UNetConfig = difflow_engine::params::decode(&model, "the bench's unet")?;

    // (a) training steps through the real train stage, on random images.
    let work = tempfile_dir()?;
    let data_dir = work.join("data");
    let n = 1024;
    let meta = DataMeta {
        data_type: DataType::Images,
        shape: vec![in_ch, size, size],
        classes: classes.max(0) as usize,
        count: n as usize,
        flip: false,
    };
    let images = Tensor::randint(256, [n, in_ch, size, size], (Kind::Uint8, Device::Cpu));
    let labels = Tensor::randint(classes.max(1), [n], (Kind::Int64, Device::Cpu));
    Dataset::new(meta.clone(), images, labels)?.write(&data_dir, "data.safetensors")?;
    let timed = |steps: usize, name: &str| -> Result<f64> {
        let job = train_job(&model, &data_dir, &work.join(name), steps, &a);
        let start = Instant::now();
        difflow_engine::stages::run(&job)?;
        Ok(start.elapsed().as_secs_f64())
    };
    let train_step_ms = if a.sample_only {
        f64::NAN
    } else {
        let short = timed(a.warmup, "short")?;
        let long = timed(a.warmup + a.train_steps, "long")?;
        (long - short) / a.train_steps as f64 * 1000.0
    };

    // (b) DDIM + CFG with difflow's sampler, on a freshly initialised net (eval mode).
    let vs = nn::VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), &unet_cfg, in_ch, size)?;
    let params: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    let tables = ScheduleSpec::Cosine { steps: 1000, s: 0.008, max_beta: 0.999, zero_terminal_snr: false }.tables();
    let sampler =
        Sampler::Ddim { steps: a.ddim_steps, eta: 0.0, spacing: difflow_core::diffusion::schedule::Spacing::Uniform };
    let guidance = if classes > 0 { Guidance::Cfg { scale: a.scale } } else { Guidance::None };
    let shape = [in_ch, size, size];
    let setup = SampleSetup {
        tables: &tables,
        model: ModelSpec { classes: classes as usize, learn_sigma: false, prediction: Prediction::Eps },
        space: DataSpace::images(),
        sampler: &sampler,
        guidance: &guidance,
        item_shape: &shape,
        noise: SampleNoise { seed: 0 },
        trajectory: 0,
        device: Device::Cpu,
    };
    let process = setup.process();
    let forward = |x: &Tensor, t: &Tensor, y: Option<&Tensor>| net.forward(x, t, y, false);
    let indices: Vec<u64> = (0..a.sample_count as u64).collect();
    let labels = Tensor::arange(a.sample_count, (Kind::Int64, Device::Cpu)).remainder(classes.max(1));
    let y = (classes > 0).then_some(&labels);
    setup.sample(&process, &forward, &indices, y, &mut |_| {})?; // warm-up
    let start = Instant::now();
    setup.sample(&process, &forward, &indices, y, &mut |_| {})?;
    let ddim_cfg_s = start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&work).ok();
    println!("{}", json!({"params": params, "train_step_ms": train_step_ms, "ddim_cfg_s": ddim_cfg_s}));
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("difflow-unet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
