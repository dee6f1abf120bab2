//! The `train` stage (variant `diffusion`): fits a denoiser to a dataset with AdamW
//! (implemented here on tensors so its moments can be checkpointed), linear warm-up and an
//! optional cosine or linear decay, global-norm gradient clipping, EMA with warm-up, an
//! optional Min-SNR-γ loss weighting or EDM preconditioning (`difflow_core::params::train`,
//! docs/recipes.md) and checkpoints that resume.
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

use anyhow::{bail, Context, Result};
use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::job::Job;
use tch::Device;

use crate::artifacts::{TrainMeta, LOSS_FILE};
use crate::data::Dataset;
use crate::diffusion::{DataSpace, Process, VarianceType};
use crate::dist::ProcessGroup;
use crate::models::ModelSpec;
use crate::params::{input, job_params};
use crate::progress::{self, Progress};
use crate::rng::derive_seed;
use crate::tblog::TrainLog;
use crate::training::checkpoint::{self, CheckpointState, CHECKPOINT_DIR};
use crate::training::{Settings, Trainer};

use difflow_core::params::train::LossType;
pub use difflow_core::params::train::{Precision, TrainParams};

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
    model_spec.prediction.fits(&schedule).map_err(|e| anyhow::anyhow!("{e}: set the model's `prediction = \"v\"`"))?;

    let mut settings = settings_of(job, &params, data.meta.count, device)?;
    if params.edm().is_some()
        && (params.loss != LossType::Simple || params.weighting.is_some() || model_spec.learn_sigma)
    {
        bail!("EDM preconditioning trains with loss = \"simple\", no `weighting` and no learned variance");
    }
    if params.loss_weights(&[], model_spec.prediction).is_some() && params.loss == LossType::Vlb {
        bail!("`weighting` scales the MSE term, and loss = \"vlb\" has none: use loss = \"simple\" or \"hybrid\"");
    }
    settings.loss_weights = params.loss_weights(&schedule.tables().alphas_cumprod, model_spec.prediction);
    if data.meta.count == 0 {
        bail!("the dataset `{}` is empty", data_input.dir.display());
    }
    check_labels(&data, &model_spec)?;
    settings.uncond_p = params.label_drop(model_spec.classes);
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
    log.session_start(&job.instance);
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
            return Err(diverged(loss, step, settings.bf16));
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
    trainer.save_weights(out, settings.steps)?;
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
        edm: params.edm(),
    };
    std::fs::write(out.join("meta.json"), serde_json::to_string_pretty(&meta)?)?;
    if checkpoint_dir.exists() {
        std::fs::remove_dir_all(&checkpoint_dir).context("cannot remove the finished run's checkpoint")?;
    }
    progress::metric("final_loss", final_loss);
    Ok(())
}

/// The model's classes cover the data's labels.
fn check_labels(data: &Dataset, model_spec: &ModelSpec) -> Result<()> {
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
    Ok(())
}

/// The error of a non-finite `loss` at 0-based `step`, with what to change.
fn diverged(loss: f64, step: usize, bf16: bool) -> anyhow::Error {
    let remedy = if bf16 {
        "lower `lr`, set `grad_clip`, or use `precision = \"fp32\"`"
    } else {
        "lower `lr` or set `grad_clip`"
    };
    anyhow::anyhow!("training diverged: the loss is {loss} at step {}; {remedy}", step + 1)
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
        lr: params.lr_plan(steps),
        loss_weights: None,
        edm: params.edm(),
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
