//! The `sample` stage: draws samples from a trained model with a sampler and optional
//! guidance. Sample i's noise depends only on (seed, i), so the result does not depend on
//! `batch` (which is therefore not part of the stage key), nor on the number of ranks: with
//! `--nproc N` each rank draws a contiguous share of the samples and rank 0 gathers them.

use anyhow::{bail, Context, Result};
use difflow_core::job::{Job, StageRef};
use tch::{Device, Kind, Tensor};

use crate::artifacts::{self, LoadedClassifier, TrainMeta};
use crate::data::store::{to_uint8, SAMPLES_FILE};
use crate::data::{DataMeta, Dataset};
use crate::diffusion::guidance::GuidanceConfig;
use crate::diffusion::noise::SampleNoise;
use crate::diffusion::sampler::{Guidance, SampleSetup};
use crate::dist::{gather_rows, share, ProcessGroup};
use crate::lanes::Lanes;
use crate::metrics::trajectory::TRAJECTORY_FILE;
use crate::models::evaluate;
use crate::params::{input, job_params};
use crate::plot::write_image_grid;
use crate::progress::{self, Progress};
use difflow_core::params::guidance::CfgInterval;

pub const GRID_FILE: &str = "grid.png";
/// Images in `grid.png` at most.
const GRID_MAX: i64 = 100;

pub use difflow_core::params::sample::{Classes, SampleParams};

pub fn run(job: &Job) -> Result<()> {
    let params: SampleParams = job_params(job)?;
    // Data parallel: join the ranks' group; on CUDA each rank takes its own GPU.
    let (group, device) = ProcessGroup::from_env(crate::device::resolve(&job.device)?)?;
    let (from_name, from) = input(job, &params.from)?;
    let meta = TrainMeta::read_input(from).with_context(|| format!("`from = {from_name}` must be a train stage"))?;
    if !meta.data.is_images() {
        super::prefer_single_thread(job);
    }
    let (_vs, model) = meta.load_model(&from.dir, params.use_ema, device)?;

    let sampler = &params.sampler;
    sampler.check_steps(meta.schedule.steps())?;
    let (count, seed, batch) = (params.count, params.seed, params.batch.max(1));
    let trajectory = params.trajectory.unwrap_or(0);
    let model_classes = meta.model_spec.classes;

    if matches!(params.guidance, Some(GuidanceConfig::Cfg { .. })) && model_classes == 0 {
        bail!("`cfg` guidance needs a class-conditional model (`classes` > 0) trained with `uncond_p` > 0");
    }
    // The classifier (and its weights, which must outlive sampling) for classifier guidance.
    let classifier = match &params.guidance {
        Some(GuidanceConfig::Classifier { model, .. }) => Some(load_classifier(job, model, device)?),
        _ => None,
    };
    // The classes samples are drawn for: the model's, or (classifier guidance of an
    // unconditional model, as Dhariwal & Nichol do) the classifier's.
    let classes = match &classifier {
        Some(loaded) if model_classes == 0 => loaded.meta.classes,
        _ => model_classes,
    };
    let labels = labels_for(&params.classes, count, classes)?;
    let guidance = match &params.guidance {
        None => Guidance::None,
        Some(GuidanceConfig::Cfg { scale, interval }) => {
            Guidance::Cfg { scale: *scale, interval: CfgInterval::from_list(interval).map_err(anyhow::Error::msg)? }
        }
        Some(GuidanceConfig::Classifier { scale, .. }) => Guidance::Classifier {
            classifier: classifier.as_ref().map(|loaded| loaded.net.as_ref()).expect("loaded above"),
            scale: *scale,
        },
    };

    let setup = SampleSetup {
        tables: &meta.schedule.tables(),
        model: meta.model_spec,
        edm: meta.edm,
        space: meta.data_space(),
        sampler,
        guidance: &guidance,
        item_shape: &meta.data.shape,
        noise: SampleNoise { seed },
        trajectory,
        device,
    };
    let process = setup.process();
    // An unconditional model never sees labels (they are only for the classifier).
    // Classifier guidance's gradient runs outside the lanes, on all of this thread's threads.
    let lanes = if classifier.is_some() { Lanes::one() } else { Lanes::for_device(device) };
    let _serial = lanes.serial_caller();
    let net = |x: &Tensor, t: &Tensor, y: Option<&Tensor>| {
        evaluate(model.as_ref(), &lanes, &x.to_kind(Kind::Float), t, y.filter(|_| model_classes > 0))
    };

    let (lo, hi) = group.as_ref().map_or((0, count), |g| share(count, g.rank(), g.world_size()));
    if group.is_some() && trajectory > 0 && lo == hi {
        bail!("`trajectory` with --nproc needs at least one sample per rank: raise `count` or lower --nproc");
    }
    let batches = (hi - lo).div_ceil(batch);
    let per_batch = sampler.steps(meta.schedule.steps()) as u64;
    let mut bar = Progress::begin(&sampling_words(hi - lo, batches, per_batch as usize), batches as u64 * per_batch);
    let mut outputs = Vec::with_capacity(batches);
    let mut kept = KeptTrajectory::default();
    for (bi, start) in (lo..hi).step_by(batch).enumerate() {
        let end = (start + batch).min(hi);
        let indices: Vec<u64> = (start as u64..end as u64).collect();
        let y = (classes > 0).then(|| labels.narrow(0, start as i64, (end - start) as i64).to_device(device));
        let done_before = bi as u64 * per_batch;
        let samples =
            setup.sample(&process, &net, &indices, y.as_ref(), &mut |k| bar.update(done_before + k as u64, None))?;
        outputs.push(samples.x0.to_device(Device::Cpu));
        if trajectory > 0 {
            kept.push(&samples.trajectory);
        }
    }
    let mut x = stack(&outputs, &meta.data.shape);
    if let Some(group) = &group {
        x = gather_rows(group, &x, lo, count, 0)?;
        if trajectory > 0 {
            kept.gather(group, lo, count)?;
        }
        if group.rank() != 0 {
            return Ok(());
        }
    }
    if x.isnan().any().int64_value(&[]) != 0 {
        bail!("sampling produced NaN values: the model or the sampler settings are unstable (try another sampler or fewer guidance)");
    }
    write_outputs(job, &meta.data, &x, &labels, classes, (trajectory > 0).then_some(&kept))?;
    if meta.data.is_images() {
        // The grid in TensorBoard's Images tab too, at the step its model trained to.
        crate::tblog::log_picture(
            &job.out_dir,
            &job.instance,
            "samples",
            meta.steps as u64,
            &job.out_dir.join(GRID_FILE),
        );
    }
    progress::metric("count", count as f64);
    Ok(())
}

/// The bar counts sampler steps over all batches: the words say what that total is made of.
fn sampling_words(samples: usize, batches: usize, steps: usize) -> String {
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "sampling {}: {} × {}",
        plural(samples, "sample", "samples"),
        plural(batches, "batch", "batches"),
        plural(steps, "step", "steps")
    )
}

/// The batches' samples as one tensor [N, …item shape] (N may be 0).
fn stack(outputs: &[Tensor], item_shape: &[i64]) -> Tensor {
    if outputs.is_empty() {
        let shape: Vec<i64> = std::iter::once(0i64).chain(item_shape.iter().copied()).collect();
        Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu))
    } else {
        Tensor::cat(outputs, 0)
    }
}

/// The kept points of each batch's reverse chain: their timesteps, and x_t and x̂₀ [points, batch, …].
#[derive(Default)]
struct KeptTrajectory {
    t: Vec<i64>,
    xt: Vec<Tensor>,
    x0: Vec<Tensor>,
}

impl KeptTrajectory {
    fn push(&mut self, points: &[(i64, Tensor, Tensor)]) {
        if self.xt.is_empty() {
            self.t = points.iter().map(|(t, _, _)| *t).collect();
        }
        let on_cpu = |x: &Tensor| x.to_device(Device::Cpu);
        self.xt.push(Tensor::stack(&points.iter().map(|(_, x, _)| on_cpu(x)).collect::<Vec<_>>(), 0));
        self.x0.push(Tensor::stack(&points.iter().map(|(_, _, x)| on_cpu(x)).collect::<Vec<_>>(), 0));
    }

    /// Every rank's kept points in sample order, as one part each of x_t and x̂₀; this
    /// rank's samples start at `lo` of `count`.
    fn gather(&mut self, group: &ProcessGroup, lo: usize, count: usize) -> Result<()> {
        for parts in [&mut self.xt, &mut self.x0] {
            let mine = Tensor::cat(parts, 1);
            *parts = vec![gather_rows(group, &mine, lo, count, 1)?];
        }
        Ok(())
    }
}

/// Writes the samples `x` (float, [count, …]) as a dataset, its image grid, and the kept trajectory.
fn write_outputs(
    job: &Job,
    data: &DataMeta,
    x: &Tensor,
    labels: &Tensor,
    classes: usize,
    kept: Option<&KeptTrajectory>,
) -> Result<()> {
    let images = data.is_images();
    let values = if images { to_uint8(x) } else { x.to_kind(Kind::Float) };
    let out_meta = DataMeta {
        data_type: data.data_type,
        shape: data.shape.clone(),
        // Unconditional samples carry no labels (all 0, classes 0).
        classes,
        count: x.size()[0] as usize,
        flip: false,
    };
    let dataset = Dataset::new(out_meta, values, labels.shallow_clone())?;
    dataset.write(&job.out_dir, SAMPLES_FILE)?;
    if images {
        let shown = dataset.values.narrow(0, 0, x.size()[0].min(GRID_MAX));
        write_image_grid(&shown, 10, &job.out_dir.join(GRID_FILE))?;
    }
    if let Some(kept) = kept {
        let map = |xs: &Tensor| if images { to_uint8(xs) } else { xs.to_kind(Kind::Float) };
        let xt = map(&Tensor::cat(&kept.xt, 1));
        let x0 = map(&Tensor::cat(&kept.x0, 1));
        let t = Tensor::from_slice(&kept.t);
        let path = job.out_dir.join(TRAJECTORY_FILE);
        Tensor::write_safetensors(&[("t", &t), ("xt", &xt), ("x0", &x0)], &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The noisy classifier named by `guidance = classifier { model = … }`.
fn load_classifier(job: &Job, model: &StageRef, device: Device) -> Result<LoadedClassifier> {
    let (name, input) = input(job, model)?;
    let loaded = artifacts::load_classifier(&input.dir, device)
        .with_context(|| format!("`{name}` must be a classifier stage"))?;
    if loaded.meta.schedule.is_none() {
        bail!("`{name}` is a clean classifier; guidance needs one trained on noisy x_t (give it a `schedule`)");
    }
    Ok(loaded)
}

/// The label of each sample: `classes = "all"` cycles 0..K, N asks for class N, a list cycles it.
fn labels_for(wanted: &Classes, count: usize, classes: usize) -> Result<Tensor> {
    let n = count as i64;
    wanted.check(classes)?;
    match wanted {
        Classes::All(_) => Ok(cycle_all(n, classes)),
        Classes::One(c) => Ok(Tensor::full([n], *c, (Kind::Int64, Device::Cpu))),
        Classes::List(wanted) => {
            Ok(Tensor::from_slice(&(0..count).map(|i| wanted[i % wanted.len()]).collect::<Vec<_>>()))
        }
    }
}

fn cycle_all(n: i64, classes: usize) -> Tensor {
    if classes == 0 {
        Tensor::zeros([n], (Kind::Int64, Device::Cpu))
    } else {
        Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(classes as i64)
    }
}
