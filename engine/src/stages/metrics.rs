//! The `metrics` stage: FID, IS, KID, precision/recall and classifier accuracy of a sample
//! set (or dataset) against a reference, written to `metrics.json`, each number also
//! emitted as an `Event::Metric` for `difflow.lock`.
//!
//! Feature statistics come from the hidden `stats` entries the orchestrator adds
//! (`samples_stats` / `reference_stats`); a hand-written job without them computes the
//! features here instead. IS reads the Inception logits of the samples' stats entry when
//! it holds them. When `samples` is a sample stage that kept a `trajectory`, FID and IS of
//! the x̂₀ predictions at each kept point go into `metrics.json` as `trajectory`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

use crate::data::Dataset;
use crate::metrics::features::Extractors;
use crate::metrics::fid::frechet_distance;
use crate::metrics::inception_score::{inception_score, SPLITS};
use crate::metrics::kid::{kernel_inception_distance, SUBSETS, SUBSET_SIZE};
use crate::metrics::precision_recall::{precision_recall, K};
use crate::params::Params;
use crate::progress::{self, Progress};
use crate::stages::stats::{extract_with_progress, StatsEntry};

pub const METRICS_FILE: &str = "metrics.json";
pub const TRAJECTORY_FILE: &str = "trajectory.safetensors";
const MEASURES: &[&str] = &["fid", "is", "kid", "precision", "recall", "accuracy"];

pub fn run(job: &Job) -> Result<()> {
    let params = Params::of_job(job);
    let device = crate::device::resolve(&job.device)?;
    let mut measures = Vec::new();
    for m in params.list("measure")? {
        match m.as_str() {
            Some(name) if MEASURES.contains(&name) => measures.push(name),
            _ => bail!("unknown measure {m}: choose from {}", MEASURES.join(", ")),
        }
    }
    let wants = |m: &str| measures.contains(&m);
    let (samples_name, samples_input) = params.stage(job, "samples")?;
    let samples = Dataset::read(&samples_input.dir).with_context(|| format!("cannot read `{samples_name}`"))?;
    let mut ex = Extractors::new(job, params, device);
    let mut out = Map::new();
    out.insert("count".into(), json!(samples.meta.count));

    let needs_stats = ["fid", "kid", "precision", "recall"].iter().any(|m| wants(m));
    let mut samples_entry = None;
    let mut reference_entry = None;
    if needs_stats {
        let s = side(job, &params, &mut ex, "samples_stats", "samples")?;
        let r = side(job, &params, &mut ex, "reference_stats", "reference")?;
        if wants("fid") {
            out.insert("fid".into(), json!(frechet_distance(&s.stats, &r.stats)?));
        }
        if wants("kid") {
            let (mean, std) = kernel_inception_distance(&s.features, &r.features, SUBSETS, SUBSET_SIZE)?;
            out.insert("kid_mean".into(), json!(mean));
            out.insert("kid_std".into(), json!(std));
        }
        if wants("precision") || wants("recall") {
            let (precision, recall) = precision_recall(&r.features, &s.features, K, device)?;
            if wants("precision") {
                out.insert("precision".into(), json!(precision));
            }
            if wants("recall") {
                out.insert("recall".into(), json!(recall));
            }
        }
        samples_entry = Some(s);
        reference_entry = Some(r);
    }

    if wants("is") {
        let logits = match &samples_entry {
            Some(s) if ex.features_are_inception() => s.logits.shallow_clone(),
            _ => {
                let net = ex.inception()?;
                let mut bar = Progress::begin("inception", samples.meta.count as u64);
                net.extract(&samples.values, 32, |d| bar.update(d as u64, None))?.logits
            }
        };
        let (mean, std) = inception_score(&logits, SPLITS)?;
        out.insert("is_mean".into(), json!(mean));
        out.insert("is_std".into(), json!(std));
    }

    if wants("accuracy") {
        let (mean, per_class) = classifier_accuracy(job, &params, device, &samples)?;
        out.insert("accuracy".into(), json!(mean));
        out.insert("per_class_accuracy".into(), json!(per_class));
    }

    let trajectory_path = samples_input.dir.join(TRAJECTORY_FILE);
    if samples_input.kind == "sample" && trajectory_path.exists() && (wants("fid") || wants("is")) {
        let every = Params::new(&samples_input.params, samples_name).usize_or("trajectory", 0)?;
        let points =
            trajectory_metrics(&trajectory_path, every, &mut ex, reference_entry.as_ref(), wants("fid"), wants("is"))?;
        out.insert("trajectory".into(), Value::Array(points));
    }

    for (name, value) in &out {
        if let Some(v) = value.as_f64() {
            progress::metric(name.clone(), v);
        }
    }
    let path = job.out_dir.join(METRICS_FILE);
    std::fs::create_dir_all(&job.out_dir).with_context(|| format!("cannot create {}", job.out_dir.display()))?;
    std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(out))?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The statistics entry of one side: the hidden `stats` stage's when the job has it,
/// otherwise computed here.
pub fn side(job: &Job, params: &Params, ex: &mut Extractors, stats_key: &str, input_key: &str) -> Result<StatsEntry> {
    if params.get(stats_key).is_some() {
        let (name, input) = params.stage(job, stats_key)?;
        return StatsEntry::read(&input.dir).with_context(|| format!("cannot read the feature statistics `{name}`"));
    }
    let (name, input) = params.stage(job, input_key)?;
    let data = Dataset::read(&input.dir).with_context(|| format!("cannot read `{name}`"))?;
    let extracted = extract_with_progress(ex.main()?, &data.values)?;
    StatsEntry::from_extracted(extracted)
}

/// Accuracy of the samples' labels under the classifier named by `features`.
fn classifier_accuracy(
    job: &Job,
    params: &Params,
    device: Device,
    samples: &Dataset,
) -> Result<(f64, Vec<Option<f64>>)> {
    let key = if params.get("classifier").is_some() { "classifier" } else { "features" };
    if params.get(key).and_then(|v| v.get("$stage")).is_none() {
        bail!("`accuracy` needs a classifier: set `classifier = <a classifier stage>` in the metrics stage");
    }
    let (name, input) = params.stage(job, key)?;
    if input.kind != "classifier" {
        bail!("`accuracy` needs `features` to be a classifier stage; `{name}` is a `{}` stage", input.kind);
    }
    let loaded = crate::stages::classifier::load(&input.dir, device)?;
    if samples.values.size()[1..] != loaded.meta.data.shape[..] {
        bail!(
            "the classifier `{name}` was trained on items of shape {:?}, but the samples are {:?}",
            loaded.meta.data.shape,
            &samples.values.size()[1..]
        );
    }
    let predicted = tch::no_grad(|| {
        let n = samples.values.size()[0];
        let mut out = Vec::new();
        for start in (0..n).step_by(256) {
            let len = (n - start).min(256);
            let x = crate::data::store::to_unit_range(&samples.values.narrow(0, start, len).to_device(device));
            out.push(loaded.net.forward(&x, None, false).argmax(1, false).to_device(Device::Cpu));
        }
        Tensor::cat(&out, 0)
    });
    crate::metrics::accuracy::accuracy(&predicted, &samples.labels, loaded.meta.classes)
}

/// FID and IS of the x̂₀ predictions at each kept point of a sampling trajectory.
pub fn trajectory_metrics(
    path: &Path,
    every: usize,
    ex: &mut Extractors,
    reference: Option<&StatsEntry>,
    fid: bool,
    is: bool,
) -> Result<Vec<Value>> {
    let tensors = Tensor::read_safetensors(path).with_context(|| format!("cannot read {}", path.display()))?;
    let take = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("{} has no tensor `{name}`", path.display()))
    };
    let (t, x0) = (take("t")?, take("x0")?);
    if x0.kind() != Kind::Uint8 {
        // Trajectories of vector data have no image metrics.
        return Ok(Vec::new());
    }
    let ts: Vec<i64> = Vec::try_from(t.to_kind(Kind::Int64))?;
    progress::log(format!("metrics of x̂₀ at {} trajectory points", ts.len()));
    let mut points = Vec::with_capacity(ts.len());
    for (k, &t) in ts.iter().enumerate() {
        let images = x0.get(k as i64);
        let mut point = Map::new();
        point.insert("t".into(), json!(t));
        if every > 0 {
            point.insert("step".into(), json!(k * every));
        }
        let mut inception_logits = None;
        if fid {
            let reference = reference.context("trajectory FID needs the reference statistics")?;
            let extracted = extract_with_progress(ex.main()?, &images)?;
            let stats = crate::metrics::fid::FeatureStats::of(&extracted.features)?;
            point.insert("fid".into(), json!(frechet_distance(&stats, &reference.stats)?));
            if ex.features_are_inception() {
                inception_logits = Some(extracted.logits);
            }
        }
        if is {
            let logits = match inception_logits {
                Some(l) => l,
                None => {
                    let net = ex.inception()?;
                    net.extract(&images, 32, |_| {})?.logits
                }
            };
            let (mean, std) = inception_score(&logits, SPLITS)?;
            point.insert("is_mean".into(), json!(mean));
            point.insert("is_std".into(), json!(std));
        }
        points.push(Value::Object(point));
    }
    Ok(points)
}

/// `plot … = curve { of = <sample stage with trajectory>, y = "fid" | "is", reference }`:
/// the metric of x̂₀ at each kept trajectory point against the sampling steps taken, as
/// `plot.png`, with the numbers in `curve.json`.
pub fn curve_plot(job: &Job) -> Result<()> {
    let params = Params::of_job(job);
    let device = crate::device::resolve(&job.device)?;
    let (name, input) = params.stage(job, "of")?;
    let path = input.dir.join(TRAJECTORY_FILE);
    if !path.exists() {
        bail!("`{name}` kept no trajectory: set `trajectory = k` (keep every k-th step) in that sample stage");
    }
    let y = params.str_or("y", "fid")?;
    let (fid, is) = match y {
        "fid" => (true, false),
        "is" => (false, true),
        other => bail!("`y = \"{other}\"`: a curve plots \"fid\" or \"is\""),
    };
    let mut ex = Extractors::new(job, params, device);
    let reference = if fid {
        if params.get("reference").is_none() {
            bail!("`y = \"fid\"` needs `reference = <a dataset or sample stage>` to compare against");
        }
        Some(side(job, &params, &mut ex, "reference_stats", "reference")?)
    } else {
        None
    };
    let every = Params::new(&input.params, name).usize_or("trajectory", 0)?;
    let points = trajectory_metrics(&path, every, &mut ex, reference.as_ref(), fid, is)?;
    if points.is_empty() {
        bail!("`{name}` holds no image trajectory to measure");
    }
    let key = if fid { "fid" } else { "is_mean" };
    let xy: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let x = p.get("step").and_then(Value::as_f64).unwrap_or(i as f64);
            (x, p.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN))
        })
        .collect();
    std::fs::create_dir_all(&job.out_dir).with_context(|| format!("cannot create {}", job.out_dir.display()))?;
    let curve_json = job.out_dir.join("curve.json");
    std::fs::write(&curve_json, serde_json::to_string_pretty(&json!({ "trajectory": points }))?)
        .with_context(|| format!("cannot write {}", curve_json.display()))?;
    let title = format!("{} of the predicted x0 along the reverse chain of {name}", if fid { "FID" } else { "IS" });
    let x_label = if every > 0 { "sampling steps taken" } else { "trajectory point" };
    let curve =
        crate::plot::curve::Curve { points: &xy, title: &title, x_label, y_label: if fid { "FID" } else { "IS" } };
    crate::plot::curve::write_curve(&curve, 800, 500, &job.out_dir.join(crate::stages::plot::PLOT_FILE))
}
