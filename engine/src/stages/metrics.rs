//! The `metrics` stage: FID, IS, KID, precision/recall and classifier accuracy of a sample
//! set (or dataset) against a reference, written to `metrics.json`, each number also
//! emitted as an `Event::Metric` for `difflow.lock`.
//!
//! Feature statistics come from the hidden `stats` entries the orchestrator adds
//! (`samples_stats` / `reference_stats`); a hand-written job without them computes the
//! features here instead. IS reads the Inception logits of the samples' stats entry when
//! it holds them. When `samples` is a sample stage that kept a `trajectory`, FID and IS of
//! the x̂₀ predictions at each kept point go into `metrics.json` as `trajectory`.

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::job::Job;
use difflow_core::params::measure::Measure;
use serde_json::{json, Map, Value};
use tch::{Device, Tensor};

use crate::data::Dataset;
use crate::metrics::entry::{side, StatsEntry};
use crate::metrics::features::{Extractors, Features};
use crate::metrics::fid::frechet_distance;
use crate::metrics::inception_score::{inception_score, SPLITS};
use crate::metrics::kid::{kernel_inception_distance, SUBSETS, SUBSET_SIZE};
use crate::metrics::precision_recall::{precision_recall, K};
use crate::metrics::trajectory::{trajectory_every, trajectory_metrics, TRAJECTORY_FILE};
use crate::params::{input, job_params};
use crate::progress::{self, Progress};

pub const METRICS_FILE: &str = "metrics.json";

pub use difflow_core::params::metrics::{MetricsParams, Side};

pub fn run(job: &Job) -> Result<()> {
    let params: MetricsParams = job_params(job)?;
    let device = crate::device::resolve(&job.device)?;
    let wants = |m: Measure| params.measure.contains(&m);
    let (samples_name, samples_input) = input(job, &params.samples)?;
    let samples = Dataset::read(&samples_input.dir).with_context(|| format!("cannot read `{samples_name}`"))?;
    enough_items(&params, Side::Samples, &format!("`{samples_name}`"), samples.meta.count as i64)?;
    let mut ex = Extractors::new(job, &params.features, device);
    let mut out = Map::new();
    out.insert("count".into(), json!(samples.meta.count));

    let needs_stats = params.measure.iter().any(|m| m.needs_reference());
    let mut sides = None;
    if needs_stats {
        let s = side(job, params.samples_stats.as_ref(), Some(&params.samples), "samples", &mut ex)?;
        let r = side(job, params.reference_stats.as_ref(), params.reference.as_ref(), "reference", &mut ex)?;
        enough_items(&params, Side::Reference, "the reference", r.features.size()[0])?;
        sides = Some((s, r));
    }
    let mut pair = None;
    let mut measured = params.measure.clone();
    measured.sort();
    measured.dedup();
    for m in measured {
        let compared = || sides.as_ref().ok_or_else(|| anyhow!("{m} compares with the reference, which is not read"));
        match m {
            Measure::Fid => {
                let (s, r) = compared()?;
                out.insert("fid".into(), json!(frechet_distance(&s.stats, &r.stats)?));
            }
            Measure::Kid => {
                let (s, r) = compared()?;
                let (mean, std) = kernel_inception_distance(&s.features, &r.features, SUBSETS, SUBSET_SIZE)?;
                out.insert("kid_mean".into(), json!(mean));
                out.insert("kid_std".into(), json!(std));
            }
            Measure::Precision | Measure::Recall => {
                let (s, r) = compared()?;
                let (precision, recall) = match pair {
                    Some(both) => both,
                    None => *pair.insert(precision_recall(&r.features, &s.features, K, device)?),
                };
                out.insert(m.name().into(), json!(if m == Measure::Precision { precision } else { recall }));
            }
            Measure::Is => {
                let (mean, std) =
                    inception_score(&is_logits(sides.as_ref().map(|(s, _)| s), &mut ex, &samples)?, SPLITS)?;
                out.insert("is_mean".into(), json!(mean));
                out.insert("is_std".into(), json!(std));
            }
            Measure::Accuracy => {
                let (mean, per_class) = classifier_accuracy(job, &params, device, &samples)?;
                out.insert("accuracy".into(), json!(mean));
                out.insert("per_class_accuracy".into(), json!(per_class));
            }
        }
    }
    let reference_entry = sides.map(|(_, r)| r);

    let trajectory_path = samples_input.dir.join(TRAJECTORY_FILE);
    if samples_input.kind == "sample" && trajectory_path.exists() && (wants(Measure::Fid) || wants(Measure::Is)) {
        let every = trajectory_every(&samples_input.params, samples_name)?;
        let points = trajectory_metrics(
            &trajectory_path,
            every,
            &mut ex,
            reference_entry.as_ref(),
            wants(Measure::Fid),
            wants(Measure::Is),
        )?;
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

/// The Inception logits of the samples: from their stats entry when it holds Inception's,
/// else computed here.
fn is_logits(samples_entry: Option<&StatsEntry>, ex: &mut Extractors, samples: &Dataset) -> Result<Tensor> {
    Ok(match samples_entry {
        Some(s) if ex.features_are_inception() => s.logits.shallow_clone(),
        _ => {
            let net = ex.inception()?;
            let mut bar = Progress::begin("inception", samples.meta.count as u64);
            net.extract(&samples.values, 32, |d| bar.update(d as u64, None))?.logits
        }
    })
}

/// Every measure has the items it needs ([`Measure::min_items`]) on this side; on the
/// reference side only the measures that compare are asked.
fn enough_items(params: &MetricsParams, side: Side, name: &str, count: i64) -> Result<()> {
    match params.most_items(side) {
        Some((m, needs)) if count < needs as i64 => bail!("{m} needs at least {needs} items, and {name} has {count}"),
        _ => Ok(()),
    }
}

/// Accuracy of the samples' labels under `classifier`, else the classifier named by `features`.
fn classifier_accuracy(
    job: &Job,
    params: &MetricsParams,
    device: Device,
    samples: &Dataset,
) -> Result<(f64, Vec<Option<f64>>)> {
    let stage = match (&params.classifier, &params.features.features) {
        (Some(stage), _) | (None, Features::Stage(stage)) => stage,
        (None, Features::Named(_)) => {
            bail!("`accuracy` needs a classifier: set `classifier = <a classifier stage>` in the metrics stage")
        }
    };
    let (name, input) = input(job, stage)?;
    if input.kind != "classifier" {
        bail!("`accuracy` needs `features` to be a classifier stage; `{name}` is a `{}` stage", input.kind);
    }
    let loaded = crate::artifacts::load_classifier(&input.dir, device)?;
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
