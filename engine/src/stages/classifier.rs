//! The `classifier` stage: trains the `encoder` on a labelled dataset — on noisy x_t at a
//! uniformly drawn t when a `schedule` is given (a noisy classifier for classifier
//! guidance, Dhariwal & Nichol 2021), on clean images otherwise (for accuracy and
//! classifier features). It holds out 10 % of the data, every class its share (the items
//! that `limit` = the other 90 % would drop: [`stratified_split`]), and reports the
//! accuracy on them. Writes `classifier.safetensors` and `meta.json` ([`ClassifierMeta`]).
//!
//! Data parallel (`--nproc N`): every rank draws the whole global batch's randomness (the
//! same seeded stream a single process draws), keeps its contiguous share, and the
//! gradients are summed in one flat all-reduce per step, so the weights equal a single
//! process's up to floating-point summation order. Rank 0 measures the accuracy and writes.
//!
//! Every step draws its randomness (batch, flips, t, noise) from libtorch's generator
//! seeded with (seed, step), and AdamW runs on flat buffers whose moments are checkpointed
//! (`checkpoint_every`, and on SIGINT, SIGTERM or SIGUSR1 at a step boundary) in the
//! staging folder's `checkpoint/`, the train stage's format: a stopped or preempted run
//! resumes there and ends with the weights an uninterrupted one has, bit for bit.
//!
//! [`crate::artifacts::load_classifier`] rebuilds a trained classifier from its cache entry.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::job::Job;
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::artifacts::{ClassifierMeta, CLASSIFIER_FILE, OPTIMIZER_FILE};
use crate::data::split::stratified_split;
use crate::data::{DataMeta, Dataset};
use crate::diffusion::{Process, VarianceType};
use crate::dist::{flat_gradient_parts, share, ProcessGroup};
use crate::models::encoder::NOISY_KEY;
use crate::models::{build_classifier, Classifier, ModelSpec, Prediction};
use crate::params::job_params;
use crate::progress::{self, Progress};
use crate::rng::derive_seed;
use crate::training::adamw::{AdamStep, FlatParams};
use crate::training::checkpoint::{self, CheckpointState, CHECKPOINT_DIR};

/// The fraction of the data held out for the reported accuracy.
pub const HELD_OUT: f64 = 0.1;

/// AdamW's decoupled weight decay for classifiers (PyTorch's default for AdamW).
const WEIGHT_DECAY: f64 = 0.01;

/// Horizontal flips of a random half of the batch (the data asked for `flip`).
pub fn random_flip(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    let mask = Tensor::rand([b], (Kind::Float, x.device())).lt(0.5).view([b, 1, 1, 1]);
    x.where_self(&mask.logical_not(), &x.flip([3i64]))
}

pub use difflow_core::params::classifier::ClassifierParams;

/// A classifier learns labelled images.
fn check_data(job: &Job, data: &DataMeta, variant: &str) -> Result<()> {
    if data.classes < 2 {
        bail!(
            "`{}` trains a classifier, but its data `{variant}` has {} classes: use labelled data",
            job.instance,
            data.classes
        );
    }
    if !data.is_images() {
        bail!("`{}`: the encoder classifies images, but the data holds vectors", job.instance);
    }
    Ok(())
}

pub fn run(job: &Job) -> Result<()> {
    let params: ClassifierParams = job_params(job)?;
    // Data parallel: join the ranks' group; on CUDA each rank takes its own GPU.
    let (group, device) = ProcessGroup::from_env(crate::device::resolve(&job.device)?)?;
    let (_, input) = crate::params::input(job, &params.data)?;
    let data = Dataset::read(&input.dir)?;
    check_data(job, &data.meta, &input.variant)?;
    let classes = data.meta.classes;
    let model_config = &params.model;
    let schedule_config = &params.schedule;
    let mut model_json = model_config.clone();
    if let Some(map) = model_json.as_object_mut() {
        map.insert(NOISY_KEY.into(), schedule_config.is_some().into());
    }
    let process = schedule_config.as_ref().map(|s| noising_process(s, device)).transpose()?;
    let Plan { held, n_train, batch, steps } = Plan::new(job, &params, data.meta.count, group.as_ref())?;
    let labels = Vec::<i64>::try_from(&data.labels).context("cannot read the data's labels")?;
    let (train_items, held_items) = stratified_split(&labels, n_train);
    let train_items = index_tensor(&train_items);
    let writer = group.as_ref().is_none_or(|g| g.rank() == 0);

    let build = || -> Result<Trainer> {
        // The initial weights come from the seed too.
        tch::manual_seed(derive_seed(&[params.seed, u64::MAX]) as i64);
        Trainer::new(device, &model_json, &data.meta, classes)
    };
    let mut trainer = build()?;
    let checkpoint_dir = job.out_dir.join(CHECKPOINT_DIR);
    checkpoint::recover_leftovers(&checkpoint_dir)?;
    let (start, mut losses) =
        checkpoint::resume(&checkpoint_dir, steps, &mut trainer, Trainer::load_checkpoint, |trainer| {
            *trainer = build()?;
            Ok(())
        })?;
    let mut log = crate::tblog::TrainLog::open(&job.out_dir, writer, &losses);
    log.session_start(&job.instance);
    crate::interrupt::install()?;
    let mut bar = Progress::begin("training", steps as u64);
    bar.update(start as u64, losses.last().copied());
    for step in start..steps {
        checkpoint::stop_if_asked(step, steps, || {
            if writer {
                trainer.save_checkpoint(&checkpoint_dir, &CheckpointState { step, losses: losses.clone() })
            } else {
                Ok(())
            }
        })?;
        tch::manual_seed(derive_seed(&[params.seed, step as u64]) as i64);
        let draw = Tensor::randint(n_train as i64, [batch as i64], (Kind::Int64, Device::Cpu));
        let (x, y) = data.batch(&train_items.index_select(0, &draw), device);
        let x = if data.meta.flip { random_flip(&x) } else { x };
        let (x, t) = noised(&x, process.as_ref());
        let loss = trainer.step(step, params.lr, group.as_ref(), (&x, t.as_ref(), &y))?;
        if !loss.is_finite() {
            bail!("`{}`: the classifier's loss became {loss} at step {}: lower `lr`", job.instance, step + 1);
        }
        losses.push(loss);
        bar.update(step as u64 + 1, Some(loss));
        let done = step + 1;
        log.record(done, loss, params.lr, None);
        if writer && params.checkpoint_every > 0 && done % params.checkpoint_every == 0 && done < steps {
            trainer.save_checkpoint(&checkpoint_dir, &CheckpointState { step: done, losses: losses.clone() })?;
        }
    }
    let last_loss = losses.last().copied().unwrap_or(f64::NAN);
    log.finish();

    if let Some(group) = &group {
        // Rank 0 measures and writes alone; the others leave once the weights agree.
        group.barrier()?;
        if group.rank() != 0 {
            return Ok(());
        }
    }
    // Its noise from the seed, whether or not the run was resumed.
    tch::manual_seed(derive_seed(&[params.seed, steps as u64]) as i64);
    let accuracy = tch::no_grad(|| held_out_accuracy(&*trainer.net, &data, &held_items, process.as_ref(), device));
    progress::metric("accuracy", accuracy);
    progress::log(format!(
        "held-out accuracy {:.2} % on {held} images ({} classifier, final loss {last_loss:.4})",
        accuracy * 100.0,
        if process.is_some() { "noisy" } else { "clean" }
    ));

    let meta = ClassifierMeta {
        model: model_json,
        schedule: schedule_config.clone(),
        classes,
        data: DataMeta { count: n_train, ..data.meta.clone() },
        accuracy: Some(accuracy),
    };
    write_outputs(&job.out_dir, &trainer, &meta, &checkpoint_dir)
}

/// The weights and `meta.json` into the staging folder; the finished run's checkpoint
/// removed.
fn write_outputs(out_dir: &Path, trainer: &Trainer, meta: &ClassifierMeta, checkpoint_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let weights = out_dir.join(CLASSIFIER_FILE);
    trainer.vars.save(&weights).with_context(|| format!("cannot write {}", weights.display()))?;
    std::fs::write(out_dir.join("meta.json"), serde_json::to_string_pretty(meta)?)
        .with_context(|| format!("cannot write {}", out_dir.display()))?;
    if checkpoint_dir.exists() {
        std::fs::remove_dir_all(checkpoint_dir).context("cannot remove the finished run's checkpoint")?;
    }
    Ok(())
}

/// The forward process a noisy classifier is trained under.
fn noising_process(schedule: &serde_json::Value, device: Device) -> Result<Process> {
    let tables = ScheduleSpec::from_config(schedule).map_err(|e| anyhow!(e))?.tables();
    let spec = ModelSpec { classes: 0, learn_sigma: false, prediction: Prediction::Eps };
    Ok(Process::new(tables, spec, VarianceType::FixedSmall, crate::diffusion::DataSpace::images(), device))
}

/// How the data splits and how long training runs.
struct Plan {
    /// How many items are held out for the accuracy.
    held: usize,
    n_train: usize,
    /// The global batch (at most the training items).
    batch: usize,
    steps: usize,
}

impl Plan {
    fn new(job: &Job, params: &ClassifierParams, n: usize, group: Option<&ProcessGroup>) -> Result<Plan> {
        let held = ((n as f64 * HELD_OUT).round() as usize).clamp(1, n.saturating_sub(1));
        let n_train = n - held;
        if n_train == 0 {
            bail!("`{}`: {n} images are too few to hold out 10 % for the accuracy", job.instance);
        }
        let batch = params.batch.min(n_train).max(1);
        let steps = match (params.steps, params.epochs) {
            (Some(s), _) => s,
            (None, Some(epochs)) => epochs * n_train.div_ceil(batch),
            (None, None) => bail!("`{}` needs `steps` or `epochs`", job.instance),
        };
        if steps == 0 {
            bail!("`{}`: `steps` (or `epochs`) must be at least 1", job.instance);
        }
        if let Some(g) = group.filter(|g| batch < g.world_size()) {
            bail!(
                "`{}`: a batch of {batch} cannot be split over {} processes: raise `batch`",
                job.instance,
                g.world_size()
            );
        }
        Ok(Plan { held, n_train, batch, steps })
    }
}

/// The classifier, its trainable parameters as one flat buffer and AdamW's moments.
struct Trainer {
    vars: nn::VarStore,
    net: Box<dyn Classifier>,
    adam: FlatParams,
}

impl Trainer {
    fn new(device: Device, model: &serde_json::Value, data: &DataMeta, classes: usize) -> Result<Trainer> {
        let vars = nn::VarStore::new(device);
        let net = build_classifier(&vars.root(), model, data, classes)?;
        let adam = FlatParams::of_store(&vars);
        Ok(Trainer { vars, net, adam })
    }

    /// One optimisation step (0-based `step`) on the global batch `(x, t, y)`; returns the
    /// global loss. Under data parallelism the rank computes its contiguous share's part
    /// and the gradients and loss are summed over the ranks in one flat all-reduce.
    fn step(
        &mut self,
        step: usize,
        lr: f64,
        group: Option<&ProcessGroup>,
        (x, t, y): (&Tensor, Option<&Tensor>, &Tensor),
    ) -> Result<f64> {
        let batch = x.size()[0] as usize;
        let (start, end) = group.map_or((0, batch), |g| share(batch, g.rank(), g.world_size()));
        let keep = |v: &Tensor| v.narrow(0, start as i64, (end - start) as i64);
        let logits = self.net.forward(&keep(x), t.map(keep).as_ref(), true);
        // The share's mean, weighted so that the ranks' sum is the global mean.
        let loss = logits.cross_entropy_for_logits(&keep(y)) * ((end - start) as f64 / batch as f64);
        let params = &self.adam.params;
        let grads = Tensor::run_backward(&[&loss], params, false, false);
        let mut g = tch::no_grad(|| Tensor::cat(&flat_gradient_parts(&grads, params), 0));
        let value = match group {
            None => loss.double_value(&[]),
            Some(group) => {
                let mut summed_loss = loss.detach().reshape([1]);
                group.all_reduce_sum(&mut [&mut g, &mut summed_loss])?;
                summed_loss.double_value(&[0])
            }
        };
        if value.is_finite() {
            let a = &self.adam;
            let update = AdamStep::new(step, lr, 0.0).with_weight_decay(WEIGHT_DECAY);
            let (m, v, p) = (a.first_moment.shallow_clone(), a.second_moment.shallow_clone(), a.flat.shallow_clone());
            // In place: the parameters are views into the flat buffer it updates.
            let _updated = tch::no_grad(|| update.apply_adam(m, v, p, &g));
        }
        Ok(value)
    }

    /// Writes the checkpoint of `state` into `dir` (the train stage's format).
    fn save_checkpoint(&self, dir: &Path, state: &CheckpointState) -> Result<()> {
        checkpoint::save(dir, state, |tmp| {
            self.vars.save(tmp.join(CLASSIFIER_FILE))?;
            self.adam.save_moments(&tmp.join(OPTIMIZER_FILE), state.step)
        })
    }

    fn load_checkpoint(&mut self, dir: &Path) -> Result<CheckpointState> {
        let context = || format!("the checkpoint in {} is unreadable; delete it to restart training", dir.display());
        let state = checkpoint::load_state(dir, &context)?;
        self.vars.load(dir.join(CLASSIFIER_FILE)).with_context(context)?;
        self.adam.load_moments(&dir.join(OPTIMIZER_FILE)).with_context(context)?;
        Ok(state)
    }
}

/// x_t at uniformly drawn t for a noisy classifier (t returned), x itself for a clean one.
fn noised(x: &Tensor, process: Option<&Process>) -> (Tensor, Option<Tensor>) {
    match process {
        Some(p) => {
            let b = x.size()[0];
            let t = Tensor::randint(p.steps() as i64, [b], (Kind::Int64, x.device()));
            let xt = p.q_sample(x, &t, &x.randn_like());
            (xt, Some(p.model_timesteps(&t)))
        }
        None => (x.shallow_clone(), None),
    }
}

/// Accuracy on the `items` of `data` (noisy classifiers: at uniformly drawn t).
fn held_out_accuracy(
    net: &dyn Classifier,
    data: &Dataset,
    items: &[usize],
    process: Option<&Process>,
    device: Device,
) -> f64 {
    let mut correct = 0i64;
    for chunk in items.chunks(256) {
        let (x, y) = data.batch(&index_tensor(chunk), device);
        let (x, t) = noised(&x, process);
        let pred = net.forward(&x, t.as_ref(), false).argmax(1, false);
        correct += pred.eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
    }
    correct as f64 / items.len().max(1) as f64
}

/// Item indices as the int64 tensor `index_select` takes.
fn index_tensor(items: &[usize]) -> Tensor {
    Tensor::from_slice(&items.iter().map(|&i| i as i64).collect::<Vec<i64>>())
}

/// Accuracy of `net` on images (uint8 [N, C, H, W]) against `labels`, clean (t unset), in
/// batches of 256: what metrics stages ask of a clean classifier.
pub fn accuracy(net: &dyn Classifier, images: &Tensor, labels: &Tensor, device: Device) -> f64 {
    tch::no_grad(|| {
        let n = images.size()[0];
        let mut correct = 0i64;
        for start in (0..n).step_by(256) {
            let len = (n - start).min(256);
            let x = crate::data::store::to_unit_range(&images.narrow(0, start, len).to_device(device));
            let pred = net.forward(&x, None, false).argmax(1, false);
            correct +=
                pred.eq_tensor(&labels.narrow(0, start, len).to_device(device)).sum(Kind::Int64).int64_value(&[]);
        }
        correct as f64 / n.max(1) as f64
    })
}
