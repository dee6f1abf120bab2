//! The `train` stage (variant `diffusion`): fits a denoiser to a dataset with AdamW
//! (implemented here on tensors so its moments can be checkpointed), linear warm-up,
//! global-norm gradient clipping, EMA with warm-up and checkpoints that resume.
//!
//! Every step draws its randomness (batch, t, noise, label dropout, flips) from libtorch's
//! generator seeded with (seed, step), so a resumed run takes exactly the steps an
//! uninterrupted one would have.
//!
//! Data parallel (`--nproc N`): every rank draws the whole global batch's randomness, keeps
//! its contiguous share of the samples, and the gradients (scaled by the global batch) are
//! summed over ranks as one flat buffer with c10d; optimizer and EMA state therefore stay
//! identical on all ranks, and the result equals one process's up to summation order.
//! Rank 0 alone writes checkpoints and outputs; every rank resumes from them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::job::{Job, StageRef};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::adamw::{share_one_buffer, AdamStep, FlatParams};
use super::checkpoint::{self, CheckpointState};
pub use super::checkpoint::{CHECKPOINT_DIR, LOSS_FILE, STATE_FILE};
use crate::data::{DataMeta, Dataset};
use crate::diffusion::loss::LossType;
use crate::diffusion::noise::derive_seed;
use crate::diffusion::{DataSpace, Process, VarianceType};
use crate::dist::{flat_gradient_parts, share, ProcessGroup};
use crate::lanes::Lanes;
use crate::models::{build_denoiser, Denoiser, ModelSpec};
use crate::params::{input, job_params};
use crate::progress::{self, Progress};
use crate::tblog::TrainLog;

pub const MODEL_FILE: &str = "model.safetensors";
pub const EMA_FILE: &str = "ema.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

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
}

impl TrainMeta {
    pub fn read(dir: &Path) -> Result<TrainMeta> {
        let path = dir.join("meta.json");
        let text = difflow_core::files::read_text(&path, difflow_core::files::Purpose::Metadata)
            .with_context(|| format!("cannot read {}", path.display()))?;
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

/// The parameters of a `train` stage.
#[derive(Debug, Clone, Deserialize)]
pub struct TrainParams {
    /// The `model` and `schedule` config objects, kept whole for `meta.json`.
    pub model: serde_json::Value,
    pub data: StageRef,
    pub schedule: serde_json::Value,
    pub loss: LossType,
    pub uncond_p: f64,
    pub steps: Option<usize>,
    pub epochs: Option<usize>,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub grad_clip: f64,
    pub ema: f64,
    pub seed: u64,
    pub precision: Precision,
    pub checkpoint_every: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Bf16,
}

pub(crate) struct Settings {
    pub(crate) loss: LossType,
    pub(crate) uncond_p: f64,
    pub(crate) steps: usize,
    pub(crate) batch: usize,
    pub(crate) lr: f64,
    pub(crate) warmup: usize,
    pub(crate) grad_clip: f64,
    pub(crate) ema: f64,
    pub(crate) seed: u64,
    pub(crate) bf16: bool,
    pub(crate) checkpoint_every: usize,
    /// Measure the gradient norm every step (for the live log) even without `grad_clip`.
    pub(crate) measure_grad_norm: bool,
}

/// What one optimisation step reports.
pub(crate) struct StepStats {
    /// The batch's mean loss.
    pub(crate) loss: f64,
    pub(crate) lr: f64,
    /// The gradient's L2 norm before clipping, when clipped or asked for.
    pub(crate) grad_norm: Option<f64>,
}

pub fn run(job: &Job) -> Result<()> {
    let params: TrainParams = job_params(job)?;
    if job.variant != "diffusion" {
        bail!("unknown train variant `{}` (available: diffusion)", job.variant);
    }
    // Data parallel: join the ranks' group; on CUDA each rank takes its own GPU.
    let (group, device) = ProcessGroup::from_env(crate::device::resolve(&job.device)?)?;
    let (_, data_input) = input(job, &params.data)?;
    let data = Dataset::read(&data_input.dir)?;
    if !data.meta.is_images() {
        super::prefer_single_thread(job);
    }
    let model_config = &params.model;
    let model_spec = ModelSpec::from_config(model_config)?;
    let schedule_config = &params.schedule;
    let schedule = ScheduleSpec::from_config(schedule_config).map_err(|e| anyhow::anyhow!(e))?;

    let mut settings = settings_of(job, &params, data.meta.count, device)?;
    if data.meta.count == 0 {
        bail!("the dataset `{}` is empty", data_input.dir.display());
    }
    if model_spec.classes > 0 {
        let max = data.labels.max().int64_value(&[]);
        if max >= model_spec.classes as i64 {
            bail!(
                "the model has `classes = {}` but the data has labels up to {max}; set `classes = {}`",
                model_spec.classes,
                data.meta.classes
            );
        }
    }
    if settings.uncond_p > 0.0 && model_spec.classes == 0 {
        bail!("`uncond_p` drops class labels, but the model is unconditional (`classes = 0`)");
    }
    let variance = if model_spec.learn_sigma { VarianceType::Learned } else { VarianceType::FixedSmall };
    let data_bound = (!data.meta.is_images()).then(|| data.values.abs().max().double_value(&[]));
    let space = if data.meta.is_images() { DataSpace::images() } else { DataSpace::points(data_bound) };
    let process = Process::new(schedule.tables(), model_spec, variance, space, device);
    let writer = group.as_ref().is_none_or(|g| g.rank() == 0);

    // The initial weights come from the seed too.
    tch::manual_seed(derive_seed(&[settings.seed, u64::MAX]) as i64);
    let mut trainer = Trainer::new(model_config, &data.meta, device)?;
    let checkpoint_dir = job.out_dir.join(CHECKPOINT_DIR);
    checkpoint::recover_leftovers(&checkpoint_dir)?;
    super::continuation::seed_checkpoint(job, settings.steps)?;
    let (start, mut losses) =
        checkpoint::resume(&checkpoint_dir, settings.steps, &mut trainer, Trainer::load_checkpoint, |trainer| {
            tch::manual_seed(derive_seed(&[settings.seed, u64::MAX]) as i64);
            *trainer = Trainer::new(model_config, &data.meta, device)?;
            Ok(())
        })?;

    let mut log = TrainLog::open(&job.out_dir, writer, &losses);
    settings.measure_grad_norm = log.is_active();
    crate::interrupt::install()?;
    let mut bar = Progress::begin("training", settings.steps as u64);
    bar.update(start as u64, losses.last().copied());
    for step in start..settings.steps {
        checkpoint::stop_if_asked(step, settings.steps, || {
            if writer {
                trainer.save_checkpoint(&checkpoint_dir, &CheckpointState { step, losses: losses.clone() })
            } else {
                Ok(())
            }
        })?;
        let stats = trainer.step(step, &settings, &process, &data, model_spec, group.as_ref())?;
        let loss = stats.loss;
        if !loss.is_finite() {
            let remedy = if settings.bf16 {
                "lower `lr`, set `grad_clip`, or use `precision = \"fp32\"`"
            } else {
                "lower `lr` or set `grad_clip`"
            };
            bail!("training diverged: the loss is {loss} at step {}; {remedy}", step + 1);
        }
        losses.push(loss);
        bar.update(step as u64 + 1, Some(loss));
        let done = step + 1;
        log.record(done, loss, stats.lr, stats.grad_norm);
        if writer && settings.checkpoint_every > 0 && done % settings.checkpoint_every == 0 && done < settings.steps {
            trainer.save_checkpoint(&checkpoint_dir, &CheckpointState { step: done, losses: losses.clone() })?;
        }
    }

    if let Some(group) = &group {
        // Rank 0 writes the outputs alone; the others leave once the weights agree.
        group.barrier()?;
        if !writer {
            return Ok(());
        }
    }
    log.finish();
    let out = &job.out_dir;
    trainer.vs.save(out.join(MODEL_FILE)).context("cannot write the model weights")?;
    trainer.ema_vs.save(out.join(EMA_FILE)).context("cannot write the EMA weights")?;
    trainer.adam.save_moments(&out.join(OPTIMIZER_FILE), settings.steps)?;
    checkpoint::write_losses(&out.join(LOSS_FILE), &losses)?;
    let final_loss = mean_tail(&losses);
    let meta = TrainMeta {
        model: model_config.clone(),
        model_spec,
        schedule_config: schedule_config.clone(),
        schedule,
        data: data.meta.clone(),
        loss: settings.loss,
        steps: settings.steps,
        final_loss: Some(final_loss),
        data_bound,
    };
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    if checkpoint_dir.exists() {
        std::fs::remove_dir_all(&checkpoint_dir).context("cannot remove the finished run's checkpoint")?;
    }
    progress::metric("final_loss", final_loss);
    Ok(())
}

/// The training settings a job asks for, on `device`, over `count` data items.
fn settings_of(job: &Job, params: &TrainParams, count: usize, device: Device) -> Result<Settings> {
    let batch = params.batch.max(1);
    let steps = match (params.steps, params.epochs) {
        (Some(steps), _) => steps,
        (None, Some(epochs)) => epochs * count.div_ceil(batch),
        (None, None) => bail!("`{}` needs `steps` or `epochs`", job.instance),
    };
    let bf16 = match params.precision {
        Precision::Fp32 => false,
        Precision::Bf16 if device.is_cuda() => true,
        Precision::Bf16 => {
            progress::log("precision = \"bf16\" autocasts on CUDA only; training in fp32 on the CPU");
            false
        }
    };
    Ok(Settings {
        loss: params.loss,
        uncond_p: params.uncond_p,
        steps,
        batch,
        lr: params.lr,
        warmup: params.warmup,
        grad_clip: params.grad_clip,
        ema: params.ema,
        seed: params.seed,
        bf16,
        checkpoint_every: params.checkpoint_every,
        measure_grad_norm: false,
    })
}

/// The mean loss over the last 10 % of steps (at least one): a steadier headline than the last step.
fn mean_tail(losses: &[f64]) -> f64 {
    if losses.is_empty() {
        return f64::NAN;
    }
    let n = (losses.len() / 10).max(1);
    losses[losses.len() - n..].iter().sum::<f64>() / n as f64
}

/// The model, its EMA copy and AdamW's moments. The trainable parameters (and their EMA
/// copies) are views into one flat buffer each, so that AdamW and the EMA are a handful of
/// tensor ops per step rather than a handful per parameter tensor.
pub(crate) struct Trainer {
    pub(crate) vs: nn::VarStore,
    ema_vs: nn::VarStore,
    pub(crate) model: Box<dyn Denoiser>,
    /// Trainable parameters (views into one flat buffer) and AdamW's moments.
    adam: FlatParams,
    /// EMA of the parameters; the EMA store's variables are views into it.
    ema_flat: Tensor,
    /// Non-trainable variables (buffers) and their EMA counterparts.
    buffers: Vec<(Tensor, Tensor)>,
}

impl Trainer {
    pub(crate) fn new(model_config: &serde_json::Value, data: &DataMeta, device: Device) -> Result<Trainer> {
        let vs = nn::VarStore::new(device);
        let model = build_denoiser(&vs.root(), model_config, data)?;
        let mut ema_vs = nn::VarStore::new(device);
        let _ema_model = build_denoiser(&ema_vs.root(), model_config, data)?;
        ema_vs.copy(&vs)?;
        let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let ema_variables: BTreeMap<String, Tensor> = ema_vs.variables().into_iter().collect();
        let mut ema_params = Vec::new();
        let mut buffers = Vec::new();
        for (name, t) in &variables {
            let ema = ema_variables[name].shallow_clone();
            if t.requires_grad() {
                ema_params.push(ema);
            } else {
                buffers.push((t.shallow_clone(), ema));
            }
        }
        let adam = FlatParams::new(&variables);
        let ema_flat = share_one_buffer(&ema_params);
        Ok(Trainer { vs, ema_vs, model, adam, ema_flat, buffers })
    }

    /// One optimisation step (0-based `step`).
    pub(crate) fn step(
        &mut self,
        step: usize,
        s: &Settings,
        process: &Process,
        data: &Dataset,
        spec: ModelSpec,
        group: Option<&ProcessGroup>,
    ) -> Result<StepStats> {
        let device = self.vs.device();
        let lanes = self.lanes(s);
        let _serial = lanes.serial_caller();
        tch::manual_seed(derive_seed(&[s.seed, step as u64]) as i64);
        let b = s.batch as i64;
        let index = Tensor::randint(data.meta.count as i64, [b], (Kind::Int64, Device::Cpu));
        let (mut x0, labels) = data.batch(&index, device);
        if data.meta.flip && data.meta.is_images() {
            let flip = Tensor::rand([b, 1, 1, 1], (Kind::Float, device)).lt(0.5);
            x0 = x0.flip([3]).where_self(&flip, &x0);
        }
        let t = Tensor::randint(process.steps() as i64, [b], (Kind::Int64, device));
        let noise = x0.randn_like();
        let y = (spec.classes > 0).then(|| {
            if s.uncond_p > 0.0 {
                let drop = Tensor::rand([b], (Kind::Float, device)).lt(s.uncond_p);
                labels.full_like(spec.classes as i64).where_self(&drop, &labels)
            } else {
                labels.shallow_clone()
            }
        });
        // This rank's share of the global batch (all of it without a group).
        let (start, end) = group.map_or((0, s.batch), |g| share(s.batch, g.rank(), g.world_size()));
        let keep = |x: &Tensor| x.narrow(0, start as i64, (end - start) as i64);
        let (x0, t, noise, y) = (keep(&x0), keep(&t), keep(&noise), y.as_ref().map(keep));
        let xt = process.q_sample(&x0, &t, &noise);

        let (mut g, loss) = self.gradient(&lanes, s, process, &xt, &x0, &t, &noise, y.as_ref())?;
        let value = match group {
            None => loss.double_value(&[]),
            Some(group) => {
                // Every rank takes part in the all-reduce, even with a non-finite loss, so
                // that all of them agree on stopping.
                let mut summed_loss = loss.reshape([1]);
                group.all_reduce_sum(&mut [&mut g, &mut summed_loss])?;
                summed_loss.double_value(&[0])
            }
        };
        let lr = if s.warmup > 0 { s.lr * ((step + 1) as f64 / s.warmup as f64).min(1.0) } else { s.lr };
        if !value.is_finite() {
            return Ok(StepStats { loss: value, lr, grad_norm: None });
        }
        let grad_norm = (s.grad_clip > 0.0 || s.measure_grad_norm).then(|| g.norm().double_value(&[]));
        tch::no_grad(|| self.update(&lanes, step, lr, s, g, grad_norm));
        Ok(StepStats { loss: value, lr, grad_norm })
    }

    /// How a step splits its batch: not at all with bf16 autocast (per-thread state) or a
    /// network that draws random numbers in training.
    fn lanes(&self, s: &Settings) -> Lanes {
        if s.bf16 || self.model.draws_in_training() {
            Lanes::one()
        } else {
            Lanes::for_device(self.vs.device())
        }
    }

    /// This process's share of the loss (its items' losses over the global batch) and its
    /// gradient as one flat buffer. Without dropout on the CPU, each batch lane computes its
    /// items' part on its own thread and the parts are added in lane order.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gradient(
        &self,
        lanes: &Lanes,
        s: &Settings,
        process: &Process,
        xt: &Tensor,
        x0: &Tensor,
        t: &Tensor,
        noise: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        if s.bf16 {
            crate::device::use_bf16_autocast();
        }
        let part = |start: i64, length: i64| -> Result<(Tensor, Tensor)> {
            let keep = |v: &Tensor| v.narrow(0, start, length);
            let xt = keep(xt);
            let forward = || self.model.try_forward(&xt, &keep(t), y.map(keep).as_ref(), true);
            let output = if s.bf16 { tch::autocast(true, forward) } else { forward() }?;
            let per_sample =
                process.training_loss(&output.to_kind(Kind::Float), &keep(x0), &xt, &keep(t), &keep(noise), s.loss)?;
            let loss = per_sample.sum(Kind::Float) / s.batch as f64;
            let grads = Tensor::run_backward(&[&loss], &self.adam.params, false, false);
            let flat = tch::no_grad(|| Tensor::cat(&flat_gradient_parts(&grads, &self.adam.params), 0));
            Ok((flat, loss.detach()))
        };
        // SAFETY: a lane reads the weights, the schedule's tables and its share of the batch,
        // and runs autograd on its own graph (gradients are returned, not accumulated into the
        // shared parameters); the network draws nothing (`draws_in_training`).
        let parts = unsafe { lanes.run(xt.size()[0], part) };
        let mut sum: Option<(Tensor, Tensor)> = None;
        for part in parts {
            let (g, loss) = part?;
            sum = Some(match sum {
                None => (g, loss),
                Some((g0, loss0)) => (g0 + g, loss0 + loss),
            });
        }
        Ok(sum.expect("at least one lane"))
    }

    fn update(&mut self, lanes: &Lanes, step: usize, lr: f64, s: &Settings, mut g: Tensor, norm: Option<f64>) {
        if let Some(norm) = norm.filter(|_| s.grad_clip > 0.0) {
            if norm > s.grad_clip {
                g *= s.grad_clip / (norm + 1e-6);
            }
        }
        let adam = AdamStep::new(step, lr, s.ema);
        let a = &self.adam;
        let flat = [&a.first_moment, &a.second_moment, &a.flat, &self.ema_flat, &g];
        // Element by element, so each lane updates its own slice of the flat buffers with the
        // same roundings as one whole pass.
        // SAFETY: a lane reads and writes only its share's rows of the buffers.
        unsafe {
            lanes.run(g.numel() as i64, |start, length| {
                let [m, v, p, e, g] = flat.map(|t| t.narrow(0, start, length));
                adam.apply(m, v, p, e, &g);
            })
        };
        for (buffer, ema) in self.buffers.iter_mut() {
            *ema *= adam.decay;
            *ema += &*buffer * (1.0 - adam.decay);
        }
    }

    /// Writes the checkpoint of `state` into `dir` (see `checkpoint::save`).
    fn save_checkpoint(&self, dir: &Path, state: &CheckpointState) -> Result<()> {
        checkpoint::save(dir, state, |tmp| {
            self.vs.save(tmp.join(MODEL_FILE))?;
            self.ema_vs.save(tmp.join(EMA_FILE))?;
            self.adam.save_moments(&tmp.join(OPTIMIZER_FILE), state.step)
        })
    }

    fn load_checkpoint(&mut self, dir: &Path) -> Result<CheckpointState> {
        let context = || format!("the checkpoint in {} is unreadable; delete it to restart training", dir.display());
        let state = checkpoint::load_state(dir, &context)?;
        self.vs.load(dir.join(MODEL_FILE)).with_context(context)?;
        self.ema_vs.load(dir.join(EMA_FILE)).with_context(context)?;
        self.adam.load_moments(&dir.join(OPTIMIZER_FILE)).with_context(context)?;
        Ok(state)
    }
}
