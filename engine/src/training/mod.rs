//! Training a denoiser: [`Trainer`] holds the model, its EMA copy and AdamW's moments and
//! takes one optimisation step at a time. The `train` stage, the speed benchmark and the
//! GPU kit's checks drive it; [`checkpoint`] is the resumable state both training stages
//! (`train`, `classifier`) keep, [`adamw`] the optimizer on flat buffers.

pub(crate) mod adamw;
pub(crate) mod checkpoint;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use tch::{nn, Device, Kind, Tensor};

use crate::artifacts::{EMA_FILE, MODEL_FILE, OPTIMIZER_FILE};
use crate::data::{DataMeta, Dataset};
use crate::diffusion::edm;
use crate::diffusion::loss::LossType;
use crate::diffusion::vlb::mean_flat;
use crate::diffusion::Process;
use crate::dist::{flat_gradient_parts, share, ProcessGroup};
use crate::lanes::Lanes;
use crate::models::{build_denoiser, Denoiser, ModelSpec};
use crate::rng::derive_seed;
use adamw::{share_one_buffer, AdamStep, FlatParams};
use checkpoint::CheckpointState;
use difflow_core::params::train::{Edm, LrPlan};

pub(crate) struct Settings {
    pub(crate) loss: LossType,
    pub(crate) uncond_p: f64,
    pub(crate) steps: usize,
    pub(crate) batch: usize,
    pub(crate) lr: LrPlan,
    /// The loss weight of each timestep of the schedule (None: uniform).
    pub(crate) loss_weights: Option<Vec<f64>>,
    /// EDM preconditioning (None: the schedule's parameterisation).
    pub(crate) edm: Option<Edm>,
    pub(crate) grad_clip: f64,
    pub(crate) ema: f64,
    pub(crate) seed: u64,
    pub(crate) bf16: bool,
    pub(crate) checkpoint_every: usize,
    /// Measure the gradient norm every step (for the live log) even without `grad_clip`.
    pub(crate) measure_grad_norm: bool,
}

/// A training batch with its noise: x_t = q(x_t | x₀, t) by `noise`, and the labels `y`.
pub(crate) struct NoisyBatch<'a> {
    pub(crate) xt: &'a Tensor,
    pub(crate) x0: &'a Tensor,
    pub(crate) t: &'a Tensor,
    pub(crate) noise: &'a Tensor,
    pub(crate) y: Option<&'a Tensor>,
    /// Each item's loss weight [B] (None: uniform).
    pub(crate) weight: Option<&'a Tensor>,
    /// The target of the net's output itself, with a unit-weighted MSE (EDM); None: the
    /// process's loss on `xt` at timesteps `t`.
    pub(crate) target: Option<&'a Tensor>,
}

/// What the net sees of a training batch and what it is scored against: x_t at timesteps t
/// with the loss weights of t, or EDM's c_in·x at c_noise(σ) with its output's target.
struct NetInputs {
    xt: Tensor,
    t: Tensor,
    weight: Option<Tensor>,
    target: Option<Tensor>,
}

impl NetInputs {
    fn new(s: &Settings, process: &Process, x0: &Tensor, t: Tensor, noise: &Tensor, normal: Option<&Tensor>) -> Self {
        if let (Some(edm), Some(normal)) = (&s.edm, normal) {
            let sigma = edm::training_sigmas(edm, normal);
            let batch = edm::training_batch(edm, x0, &sigma, noise);
            return NetInputs { xt: batch.input, t: batch.c_noise, weight: None, target: Some(batch.target) };
        }
        let xt = process.q_sample(x0, &t, noise);
        let weight = s
            .loss_weights
            .as_ref()
            .map(|w| Tensor::from_slice(w).to_device(t.device()).index_select(0, &t).to_kind(Kind::Float));
        NetInputs { xt, t, weight, target: None }
    }
}

/// What one optimisation step reports.
pub(crate) struct StepStats {
    /// The batch's mean loss.
    pub(crate) loss: f64,
    pub(crate) lr: f64,
    /// The gradient's L2 norm before clipping, when clipped or asked for.
    pub(crate) grad_norm: Option<f64>,
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
        // EDM's log-normal σ, drawn after what every run draws so other runs are unchanged.
        let normal = s.edm.map(|_| Tensor::randn([b], (Kind::Float, device)));
        // This rank's share of the global batch (all of it without a group).
        let (start, end) = group.map_or((0, s.batch), |g| share(s.batch, g.rank(), g.world_size()));
        let keep = |x: &Tensor| x.narrow(0, start as i64, (end - start) as i64);
        let (x0, t, noise, y) = (keep(&x0), keep(&t), keep(&noise), y.as_ref().map(keep));
        let inputs = NetInputs::new(s, process, &x0, t, &noise, normal.as_ref().map(keep).as_ref());
        let batch = NoisyBatch {
            xt: &inputs.xt,
            x0: &x0,
            t: &inputs.t,
            noise: &noise,
            y: y.as_ref(),
            weight: inputs.weight.as_ref(),
            target: inputs.target.as_ref(),
        };
        let (mut g, loss) = self.gradient(&lanes, s, process, &batch)?;
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
        let lr = s.lr.at(step);
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
    pub(crate) fn gradient(
        &self,
        lanes: &Lanes,
        s: &Settings,
        process: &Process,
        batch: &NoisyBatch,
    ) -> Result<(Tensor, Tensor)> {
        let NoisyBatch { xt, x0, t, noise, y, weight, target } = *batch;
        if s.bf16 {
            crate::device::use_bf16_autocast();
        }
        let part = |start: i64, length: i64| -> Result<(Tensor, Tensor)> {
            let keep = |v: &Tensor| v.narrow(0, start, length);
            let xt = keep(xt);
            let forward = || self.model.try_forward(&xt, &keep(t), y.map(keep).as_ref(), true);
            let output = if s.bf16 { tch::autocast(true, forward) } else { forward() }?;
            let output = output.to_kind(Kind::Float);
            let per_sample = match target {
                Some(target) => mean_flat(&(&output - keep(target)).square()),
                None => {
                    let (x0, t, noise, weight) = (keep(x0), keep(t), keep(noise), weight.map(keep));
                    process.training_loss(&output, &x0, &xt, &t, &noise, s.loss, weight.as_ref())?
                }
            };
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

    /// Writes the finished run's raw and EMA weights and AdamW's moments after `steps` into
    /// the entry `out`.
    pub(crate) fn save_weights(&self, out: &Path, steps: usize) -> Result<()> {
        self.vs.save(out.join(MODEL_FILE)).context("cannot write the model weights")?;
        self.ema_vs.save(out.join(EMA_FILE)).context("cannot write the EMA weights")?;
        self.adam.save_moments(&out.join(OPTIMIZER_FILE), steps)
    }

    /// Writes the checkpoint of `state` into `dir` (see `checkpoint::save`).
    pub(crate) fn save_checkpoint(&self, dir: &Path, state: &CheckpointState) -> Result<()> {
        checkpoint::save(dir, state, |tmp| {
            self.vs.save(tmp.join(MODEL_FILE))?;
            self.ema_vs.save(tmp.join(EMA_FILE))?;
            self.adam.save_moments(&tmp.join(OPTIMIZER_FILE), state.step)
        })
    }

    pub(crate) fn load_checkpoint(&mut self, dir: &Path) -> Result<CheckpointState> {
        let context = || format!("the checkpoint in {} is unreadable; delete it to restart training", dir.display());
        let state = checkpoint::load_state(dir, &context)?;
        self.vs.load(dir.join(MODEL_FILE)).with_context(context)?;
        self.ema_vs.load(dir.join(EMA_FILE)).with_context(context)?;
        self.adam.load_moments(&dir.join(OPTIMIZER_FILE)).with_context(context)?;
        Ok(state)
    }
}
