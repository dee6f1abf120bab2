//! The `classifier` stage: trains the `encoder` on a labelled dataset — on noisy x_t at a
//! uniformly drawn t when a `schedule` is given (a noisy classifier for classifier
//! guidance, Dhariwal & Nichol 2021), on clean images otherwise (for accuracy and
//! classifier features). It holds out the last 10 % of the data and reports the accuracy
//! on it. Writes `classifier.safetensors` and `meta.json` ([`ClassifierMeta`]).
//!
//! Data parallel (`--nproc N`): every rank draws the whole global batch's randomness (the
//! same seeded stream a single process draws), keeps its contiguous share, and the
//! gradients are summed in one flat all-reduce per step, so the weights equal a single
//! process's up to floating-point summation order. Rank 0 measures the accuracy and writes.
//!
//! [`crate::models::load_classifier`] rebuilds a trained classifier from its cache entry.

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::diffusion::schedule::ScheduleSpec;
use difflow_core::job::{Job, StageRef};
use serde::Deserialize;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::data::{DataMeta, Dataset};
use crate::diffusion::{Process, VarianceType};
use crate::dist::{share, ProcessGroup};
use crate::models::encoder::NOISY_KEY;
use crate::models::{build_classifier, Classifier, ClassifierMeta, ModelSpec, Prediction, CLASSIFIER_FILE};
use crate::params::job_params;
use crate::progress::{self, Progress};

/// The fraction of the data held out for the reported accuracy.
pub const HELD_OUT: f64 = 0.1;

/// Horizontal flips of a random half of the batch (the data asked for `flip`).
pub fn random_flip(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    let mask = Tensor::rand([b], (Kind::Float, x.device())).lt(0.5).view([b, 1, 1, 1]);
    x.where_self(&mask.logical_not(), &x.flip([3i64]))
}

/// The parameters of a `classifier` stage.
#[derive(Debug, Clone, Deserialize)]
pub struct ClassifierParams {
    /// The `model` config object (an encoder), kept whole for `meta.json`.
    pub model: serde_json::Value,
    pub data: StageRef,
    /// Set: a noisy classifier of x_t; unset: a clean one.
    pub schedule: Option<serde_json::Value>,
    pub steps: Option<usize>,
    pub epochs: Option<usize>,
    pub batch: usize,
    pub lr: f64,
    pub seed: i64,
}

pub fn run(job: &Job) -> Result<()> {
    let params: ClassifierParams = job_params(job)?;
    // Data parallel: join the ranks' group; on CUDA each rank takes its own GPU.
    let (group, device) = ProcessGroup::from_env(crate::device::resolve(&job.device)?)?;
    let (_, input) = crate::params::input(job, &params.data)?;
    let data = Dataset::read(&input.dir)?;
    let classes = data.meta.classes;
    if classes < 2 {
        bail!(
            "`{}` trains a classifier, but its data `{}` has {classes} classes: use labelled data",
            job.instance,
            input.variant
        );
    }
    if !data.meta.is_images() {
        bail!("`{}`: the encoder classifies images, but the data holds vectors", job.instance);
    }
    tch::manual_seed(params.seed);

    let model_config = &params.model;
    let schedule_config = &params.schedule;
    let noisy = schedule_config.is_some();
    let mut model_json = model_config.clone();
    if let Some(map) = model_json.as_object_mut() {
        map.insert(NOISY_KEY.into(), noisy.into());
    }
    let process = schedule_config.as_ref().map(|s| noising_process(s, device)).transpose()?;
    let Plan { held, n_train, batch, steps } = Plan::new(job, &params, data.meta.count, group.as_ref())?;

    let vars = nn::VarStore::new(device);
    let net = build_classifier(&vars.root(), &model_json, &data.meta, classes)?;
    let mut opt = nn::AdamW::default().build(&vars, params.lr)?;
    let mut bar = Progress::begin("training", steps as u64);
    let mut last_loss = f64::NAN;
    // A classifier keeps no checkpoint (it trains in minutes): on a stop request it ends
    // at once and starts over next time.
    crate::interrupt::install()?;
    for step in 1..=steps {
        if crate::interrupt::stop_requested() {
            let message = format!("stopped at step {} of {steps}; a classifier starts over next time", step - 1);
            return Err(crate::interrupt::Interrupted { message }.into());
        }
        let index = Tensor::randint(n_train as i64, [batch as i64], (Kind::Int64, Device::Cpu));
        let (x, y) = data.batch(&index, device);
        let x = if data.meta.flip { random_flip(&x) } else { x };
        let (x, t) = noised(&x, process.as_ref());
        last_loss = train_step(&*net, &mut opt, &vars, group.as_ref(), (&x, t.as_ref(), &y))?;
        if !last_loss.is_finite() {
            bail!("`{}`: the classifier's loss became {last_loss} at step {step}: lower `lr`", job.instance);
        }
        bar.update(step as u64, Some(last_loss));
    }

    if let Some(group) = &group {
        // Rank 0 measures and writes alone; the others leave once the weights agree.
        group.barrier()?;
        if group.rank() != 0 {
            return Ok(());
        }
    }
    let accuracy = tch::no_grad(|| held_out_accuracy(&*net, &data, n_train, process.as_ref(), device));
    progress::metric("accuracy", accuracy);
    progress::log(format!(
        "held-out accuracy {:.2} % on {held} images ({} classifier, final loss {last_loss:.4})",
        accuracy * 100.0,
        if noisy { "noisy" } else { "clean" }
    ));

    std::fs::create_dir_all(&job.out_dir).with_context(|| format!("cannot create {}", job.out_dir.display()))?;
    let weights = job.out_dir.join(CLASSIFIER_FILE);
    vars.save(&weights).with_context(|| format!("cannot write {}", weights.display()))?;
    let meta = ClassifierMeta {
        model: model_json,
        schedule: schedule_config.clone(),
        classes,
        data: DataMeta { count: n_train, ..data.meta.clone() },
        accuracy: Some(accuracy),
    };
    std::fs::write(job.out_dir.join("meta.json"), serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("cannot write {}", job.out_dir.display()))?;
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
    /// Items held out for the accuracy (the last ones).
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

/// One optimisation step on the global batch `(x, t, y)`; returns the global loss. Under
/// data parallelism the rank trains on its contiguous share and the gradients are summed.
fn train_step(
    net: &dyn Classifier,
    opt: &mut nn::Optimizer,
    vars: &nn::VarStore,
    group: Option<&ProcessGroup>,
    (x, t, y): (&Tensor, Option<&Tensor>, &Tensor),
) -> Result<f64> {
    let Some(group) = group else {
        let loss = net.forward(x, t, true).cross_entropy_for_logits(y);
        opt.backward_step(&loss);
        return Ok(loss.double_value(&[]));
    };
    let batch = x.size()[0] as usize;
    let (start, end) = share(batch, group.rank(), group.world_size());
    let keep = |v: &Tensor| v.narrow(0, start as i64, (end - start) as i64);
    let logits = net.forward(&keep(x), t.map(keep).as_ref(), true);
    // The share's mean, weighted so that the ranks' sum is the global mean.
    let loss = logits.cross_entropy_for_logits(&keep(y)) * ((end - start) as f64 / batch as f64);
    opt.zero_grad();
    loss.backward();
    let global_loss = all_reduce_gradients(group, vars, &loss)?;
    opt.step();
    Ok(global_loss)
}

/// Sums the gradients of all trainable variables and the loss over the ranks (one flat
/// all-reduce) and applies the sums; returns the global loss. The caller then steps.
fn all_reduce_gradients(group: &ProcessGroup, vars: &nn::VarStore, loss: &Tensor) -> Result<f64> {
    let params = vars.trainable_variables();
    let mut flat = tch::no_grad(|| {
        let mut parts = crate::dist::gradient_parts(&params);
        parts.push(loss.detach().reshape([1]));
        Tensor::cat(&parts, 0)
    });
    group.all_reduce_sum(&mut [&mut flat])?;
    tch::no_grad(|| {
        let mut offset = 0;
        for p in &params {
            let n = p.numel() as i64;
            let mut g = p.grad();
            if g.defined() {
                g.copy_(&flat.narrow(0, offset, n).view_as(&g));
            }
            offset += n;
        }
        Ok(flat.double_value(&[offset]))
    })
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

/// Accuracy on items `from..` of `data` (noisy classifiers: at uniformly drawn t).
fn held_out_accuracy(
    net: &dyn Classifier,
    data: &Dataset,
    from: usize,
    process: Option<&Process>,
    device: Device,
) -> f64 {
    let n = data.meta.count;
    let mut correct = 0i64;
    for start in (from..n).step_by(256) {
        let end = (start + 256).min(n);
        let index = Tensor::arange_start(start as i64, end as i64, (Kind::Int64, Device::Cpu));
        let (x, y) = data.batch(&index, device);
        let (x, t) = noised(&x, process);
        let pred = net.forward(&x, t.as_ref(), false).argmax(1, false);
        correct += pred.eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
    }
    correct as f64 / (n - from) as f64
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
