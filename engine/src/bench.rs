//! `difflow-worker bench [OPTIONS]`: difflow's side of the speed benchmarks
//! (`scripts/bench_cpu.sh`, the GPU kit). It builds one UNet with the train stage's own
//! trainer and sampler, then answers commands on stdin, one JSON line each on stdout, so
//! that a driver can interleave difflow with its PyTorch contenders round by round:
//!
//! * `train K`: K training steps (batch, label dropout, q_sample, forward, ε-MSE, backward,
//!   clipping, AdamW, EMA) → `{"train_ms": per step}`;
//! * `sample K`: DDIM with K steps and classifier-free guidance on `--sample-count` images
//!   → `{"sample_ms": per step}` (the chain's steps; its set-up is not timed);
//! * `fused 0|1`: the fused inference kernels (`models::fused`) off or on for the
//!   commands that follow (default: on unless `DIFFLOW_FUSED=0`) → `{"fused": bool}`;
//! * `lanes N`: at most N batch lanes (`crate::lanes`; 0: as many as threads) for the
//!   commands that follow → `{"lanes": N}`;
//! * `norm K`: K calls of the residual block's GroupNorm + scale-shift + SiLU on the first
//!   level's activation of a CFG batch (2 × `--sample-count` images), fused and ATen's, in
//!   turns → `{"norm_fused_ms": per call, "norm_aten_ms": per call}`;
//! * `inception K`: K batches of Inception pool3 + logits on random uint8 images with
//!   random weights → `{"inception_ms": per batch}`.
//!
//! The first line is `{"params": N, "device": …}`.

use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use difflow_core::diffusion::schedule::{ScheduleSpec, Spacing};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

use crate::data::{DataMeta, DataType, Dataset};
use crate::diffusion::loss::LossType;
use crate::diffusion::noise::{SampleNoise, STREAM_INIT};
use crate::diffusion::sampler::{Guidance, SampleSetup, Sampler};
use crate::diffusion::{DataSpace, Process, VarianceType};
use crate::lanes::Lanes;
use crate::metrics::inception::{expected_state_dict, InceptionV3, Precision};
use crate::models::{evaluate, Denoiser, ModelSpec};
use crate::training::{Settings, Trainer};
use difflow_core::params::train::{LrPlan, LrSchedule};

/// Options shared by `bench` and `check`.
pub struct Options {
    /// The `unet` model config (schema defaults filled in by the caller's JSON), or with
    /// `--python FILE:CLASS` a `python` model of that class built with the same keys.
    pub model: Value,
    pub device: Device,
    pub threads: i32,
    pub batch: usize,
    pub sample_count: i64,
    pub scale: f64,
    pub bf16: bool,
    pub inception_batch: i64,
    pub inception_size: i64,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            model: json!({}),
            device: Device::Cpu,
            threads: 0,
            batch: 32,
            sample_count: 16,
            scale: 2.0,
            bf16: false,
            inception_batch: 8,
            inception_size: 32,
        };
        let mut python: Option<String> = None;
        let mut i = 0;
        while i < args.len() {
            if args[i] == "--bf16" {
                o.bf16 = true;
                i += 1;
                continue;
            }
            let value = args.get(i + 1).with_context(|| format!("{} needs a value", args[i]))?;
            match args[i].as_str() {
                "--model" => o.model = serde_json::from_str(value).context("--model must be a JSON object")?,
                "--device" => o.device = crate::device::resolve(value)?,
                "--threads" => o.threads = value.parse().context("--threads")?,
                "--batch" => o.batch = value.parse().context("--batch")?,
                "--sample-count" => o.sample_count = value.parse().context("--sample-count")?,
                "--scale" => o.scale = value.parse().context("--scale")?,
                "--inception-batch" => o.inception_batch = value.parse().context("--inception-batch")?,
                "--inception-size" => o.inception_size = value.parse().context("--inception-size")?,
                "--python" => python = Some(value.clone()),
                other => bail!("unknown option {other}"),
            }
            i += 2;
        }
        let mut model = o.model.clone();
        model["kind"] = "model".into();
        model["variant"] = "unet".into();
        o.model = difflow_core::schema::with_defaults("model", "unet", &model);
        if let Some(python) = python {
            o.model = python_model(&o.model, &python)?;
        }
        if o.threads > 0 {
            tch::set_num_threads(o.threads);
        }
        Ok(o)
    }

    /// (in_channels, size, classes) of the configured net, from `in_ch`/`size` beside the model keys.
    pub fn shape(&self) -> (i64, i64, i64) {
        let get = |key: &str, default: i64| self.model.get(key).and_then(Value::as_i64).unwrap_or(default);
        (get("in_ch", 3), get("size", 32), get("classes", 0))
    }

    pub fn data_meta(&self, count: usize) -> DataMeta {
        let (c, size, classes) = self.shape();
        DataMeta {
            data_type: DataType::Images,
            shape: vec![c, size, size],
            classes: classes as usize,
            count,
            flip: false,
        }
    }

    pub fn model_spec(&self) -> Result<ModelSpec> {
        Ok(ModelSpec::from_config(&self.model)?)
    }
}

/// The `python` model of `FILE:CLASS` built with the `unet` config's keys (and `in_ch`,
/// `size`) as its arguments: a Python copy of the UNet, benchmarked against the built-in one.
fn python_model(unet: &Value, file_class: &str) -> Result<Value> {
    let (file, class) = file_class.rsplit_once(':').context("--python takes FILE:CLASS")?;
    let mut args = unet.clone();
    let object = args.as_object_mut().context("--model must be a JSON object")?;
    for key in ["kind", "variant", "prediction"] {
        object.remove(key);
    }
    object.entry("in_ch").or_insert(json!(3));
    object.entry("size").or_insert(json!(32));
    Ok(json!({
        "kind": "model", "variant": "python", "file": file, "class": class, "args": args,
        "classes": unet["classes"], "learn_sigma": unet["learn_sigma"], "prediction": unet["prediction"],
        "in_ch": unet.get("in_ch"), "size": unet.get("size"),
    }))
}

/// Random uint8 images with labels, on the CPU (as a dataset stage would hold them).
pub fn random_dataset(o: &Options, count: i64) -> Result<Dataset> {
    let (c, size, classes) = o.shape();
    let images = Tensor::randint(256, [count, c, size, size], (Kind::Uint8, Device::Cpu));
    let labels = Tensor::randint(classes.max(1), [count], (Kind::Int64, Device::Cpu));
    Dataset::new(o.data_meta(count as usize), images, labels)
}

/// The settings of the benchmarked train stage (cosine schedule, lr 1e-4, clip 1, EMA 0.999).
pub(crate) fn settings(o: &Options, classes: usize) -> Settings {
    Settings {
        loss: LossType::Simple,
        uncond_p: if classes > 0 { 0.1 } else { 0.0 },
        steps: usize::MAX,
        batch: o.batch,
        lr: LrPlan { lr: 1e-4, warmup: 0, steps: usize::MAX, schedule: LrSchedule::Constant, floor: 0.0 },
        loss_weights: None,
        edm: None,
        grad_clip: 1.0,
        ema: 0.999,
        seed: 0,
        bf16: o.bf16 && o.device.is_cuda(),
        checkpoint_every: 0,
        measure_grad_norm: false,
    }
}

pub fn schedule() -> ScheduleSpec {
    ScheduleSpec::Cosine { steps: 1000, s: 0.008, max_beta: 0.999, zero_terminal_snr: false }
}

/// Random weights with the layout of the FID InceptionV3 (for speed and device checks,
/// which need no trained weights).
pub fn random_inception(device: Device) -> Result<InceptionV3> {
    let tensors = expected_state_dict()
        .into_iter()
        .map(|(name, shape)| {
            // He initialisation and BatchNorm statistics near (0, 1) keep activations of
            // order one through the 94 convolutions (no vanishing into slow denormals).
            let (shape, options) = (shape.as_slice(), (Kind::Float, Device::Cpu));
            let fan_in: i64 = shape.iter().skip(1).product::<i64>().max(1);
            let t = match name.rsplit('.').next() {
                Some("running_var") => Tensor::rand(shape, options) * 0.2 + 0.9,
                Some("weight") if name.contains(".bn.") => Tensor::rand(shape, options) * 0.2 + 0.9,
                Some("weight") => Tensor::randn(shape, options) * (2.0 / fan_in as f64).sqrt(),
                _ => Tensor::randn(shape, options) * 0.05,
            };
            (name, t)
        })
        .collect();
    InceptionV3::from_state_dict(tensors, device, Precision::F32)
}

fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Runs the command loop of `difflow-worker bench`.
pub fn serve(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let spec = o.model_spec()?;
    tch::manual_seed(0);
    let data = random_dataset(&o, 1024)?;
    let s = settings(&o, spec.classes);
    let process = Process::new(schedule().tables(), spec, VarianceType::FixedSmall, DataSpace::images(), o.device);
    let mut trainer = Trainer::new(&o.model, &data.meta, o.device)?;
    let params: i64 = trainer.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let mut inception: Option<InceptionV3> = None;
    let mut out = std::io::stdout();
    writeln!(out, "{}", json!({"params": params, "device": format!("{:?}", o.device)}))?;
    let mut step = 0;
    let mut fused = crate::models::fused::enabled();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let (Some(command), Some(count)) = (words.next(), words.next()) else { continue };
        let count: usize = count.parse().with_context(|| format!("`{line}`: the count is not a number"))?;
        if command == "fused" {
            fused = count != 0;
            writeln!(out, "{}", json!({"fused": fused}))?;
            continue;
        }
        if command == "lanes" {
            crate::lanes::set_cap(count);
            writeln!(out, "{}", json!({"lanes": count}))?;
            continue;
        }
        let count = count.max(1);
        let start = Instant::now();
        let reply = match command {
            "train" => {
                for _ in 0..count {
                    trainer.step(step, &s, &process, &data, spec, None)?;
                    step += 1;
                }
                synchronize(o.device);
                json!({"train_ms": start.elapsed().as_secs_f64() * 1e3 / count as f64})
            }
            "sample" => {
                // DDIM (η = 0) with `count` steps and classifier-free guidance.
                let sampler = Sampler::Ddim { steps: count, eta: 0.0, spacing: Spacing::Uniform };
                let chain = ChainSettings { scale: o.scale, seed: 0 };
                let (_, chain_ms) = crate::models::fused::with_fused(fused, || {
                    sample_chain(&o, spec, &sampler, trainer.model.as_ref(), o.device, chain)
                })?;
                json!({"sample_ms": chain_ms / count as f64})
            }
            "norm" => norm_timings(&o, count),
            "inception" => {
                let net = match &mut inception {
                    Some(net) => net,
                    slot => slot.insert(random_inception(o.device)?),
                };
                let start = Instant::now();
                let (b, size) = (o.inception_batch, o.inception_size);
                let images = Tensor::randint(256, [b, 3, size, size], (Kind::Uint8, Device::Cpu));
                for _ in 0..count {
                    net.extract(&images, b as usize, |_| {})?;
                }
                json!({"inception_ms": start.elapsed().as_secs_f64() * 1e3 / count as f64})
            }
            other => bail!("unknown bench command `{other}` (train, sample, fused, lanes, norm, inception)"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

/// Per-call times of the fused norm and of ATen's composition, `count` calls each in
/// alternating blocks of ten, on the first level's activation of a CFG batch.
fn norm_timings(o: &Options, count: usize) -> Value {
    use crate::models::fused::{with_fused, Embedding, Norm};
    let (_, size, _) = o.shape();
    let channels = o.model["channels"].as_i64().unwrap_or(32);
    let batch = 2 * o.sample_count;
    let vs = tch::nn::VarStore::new(o.device);
    let norm = Norm::new(vs.root(), 32.min(channels), channels, 1e-5);
    let options = (Kind::Float, o.device);
    let x = Tensor::randn([batch, channels, size, size], options);
    let emb = Tensor::randn([batch, 2 * channels, 1, 1], options);
    let halves = emb.chunk(2, 1);
    let joined = Embedding::ScaleShift(&halves[0], &halves[1]);
    let mut totals = [0.0f64; 2];
    let _guard = tch::no_grad_guard();
    for block in 0..count.div_ceil(10) {
        let calls = 10.min(count - 10 * block);
        for (i, on) in [true, false].into_iter().enumerate() {
            let start = Instant::now();
            with_fused(on, || (0..calls).for_each(|_| drop(norm.forward_with(&x, joined, true, false))));
            synchronize(o.device);
            totals[i] += start.elapsed().as_secs_f64() * 1e3;
        }
    }
    json!({"norm_fused_ms": totals[0] / count as f64, "norm_aten_ms": totals[1] / count as f64})
}

/// Guidance and per-sample noise of a chain: CFG at `scale` on a class-conditional net
/// (none on an unconditional one), noise from `seed`.
pub(crate) struct ChainSettings {
    pub scale: f64,
    pub seed: u64,
}

/// `sampler`'s chain on `--sample-count` images (labels 0, 1, … cycling over the classes):
/// the samples and the milliseconds of the chain's steps. The set-up before the first step
/// (the respaced process, the per-sample initial noise) is not timed, as a long chain
/// amortises it and the eager twin's step has none.
pub(crate) fn sample_chain(
    o: &Options,
    spec: ModelSpec,
    sampler: &Sampler,
    net: &dyn Denoiser,
    device: Device,
    chain: ChainSettings,
) -> Result<(Tensor, f64)> {
    let (c, size, classes) = o.shape();
    let tables = schedule().tables();
    let guidance = if classes > 0 { Guidance::Cfg { scale: chain.scale, interval: None } } else { Guidance::None };
    let shape = [c, size, size];
    let setup = SampleSetup {
        tables: &tables,
        model: spec,
        edm: None,
        space: DataSpace::images(),
        sampler,
        guidance: &guidance,
        item_shape: &shape,
        noise: SampleNoise { seed: chain.seed },
        trajectory: 0,
        device,
    };
    let process = setup.process();
    let lanes = Lanes::for_device(device);
    let _serial = lanes.serial_caller();
    let forward = |x: &Tensor, t: &Tensor, y: Option<&Tensor>| evaluate(net, &lanes, x, t, y);
    let indices: Vec<u64> = (0..o.sample_count as u64).collect();
    let labels = Tensor::arange(o.sample_count, (Kind::Int64, device)).remainder(classes.max(1));
    let y = (classes > 0).then_some(&labels);
    let x_init = setup.noise.normal(&indices, STREAM_INIT, &shape, device);
    synchronize(device);
    let start = Instant::now();
    let samples = setup.sample_from(&process, &forward, x_init, &indices, y, &mut |_| {})?;
    synchronize(device);
    Ok((samples.x0, start.elapsed().as_secs_f64() * 1e3))
}
