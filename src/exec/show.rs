//! `difflow show FILE NAME`: a schedule's table, a model's size (from the worker's
//! `describe` job), another config's resolved values, or a stage's outputs and metrics.

use std::fmt::Write as _;

use serde_json::{json, Value as Json};

use super::worker::{run_worker, worker_path, Progress, WorkerFailure};
use super::{Failure, Session};
use crate::cache::continuation::grouped;
use crate::cache::lockfile::headline_metrics;
use crate::diffusion::schedule::ScheduleSpec;
use crate::graph;
use crate::job::{Job, JobSettings};
use crate::lang::value::{Config, Value};
use crate::report::replicates;
use crate::report::stats::Summary;
use difflow_core::params::dataset::DatasetParams;
use std::collections::BTreeMap;

/// The parameter count of model `name` of `pipeline` (from `file`), from the worker.
pub fn parameter_count(file: &std::path::Path, pipeline: &crate::lang::Pipeline, name: &str) -> Result<u64, String> {
    // The editor never runs project Python (trusted or not).
    if pipeline.configs.get(name).is_some_and(|c| c.kind == "model" && c.variant == "python") {
        return Err("a python model's size needs its code run: see `difflow show`".into());
    }
    let session = Session::new(file, pipeline).map_err(|e| e.to_string())?;
    let answer = show(&session, name, true).map_err(|e| e.to_string())?;
    let json: Json = serde_json::from_str(answer.trim()).map_err(|e| e.to_string())?;
    json["params"].as_u64().ok_or_else(|| "the worker gave no parameter count".into())
}

/// The text (or JSON) to print for `name`.
pub fn show(s: &Session, name: &str, as_json: bool) -> Result<String, Failure> {
    if let Some(config) = s.pipeline.configs.get(name) {
        return match config.kind.as_str() {
            "schedule" => {
                let spec = schedule_spec(config).map_err(Failure::Usage)?;
                Ok(if as_json { schedule_json(&spec).to_string() + "\n" } else { schedule_table(name, &spec) })
            }
            "model" => describe_model(s, name, config, as_json),
            _ => Ok(if as_json {
                config.to_json().to_string() + "\n"
            } else {
                format!("{name}: {} {}\n", config.kind, Value::Config(config.clone()).display())
            }),
        };
    }
    let indices = graph::resolve_names(&s.pipeline, &s.graph, &[name.to_string()]).map_err(Failure::Usage)?;
    let mut items = Vec::new();
    let mut text = String::new();
    for i in indices {
        let inst = s.instance(i);
        let key = s.key(i);
        let dir = s.cache.entry_dir(key);
        let manifest = s.cache.manifest(key);
        let _ = writeln!(text, "{} ({}{})", inst.name, inst.kind, variant_suffix(&inst.variant));
        let _ = writeln!(text, "  key      {key}");
        let mut item = json!({ "instance": inst.name, "kind": inst.kind, "key": key, "cached": manifest.is_some() });
        match &manifest {
            Some(m) => {
                let metrics = headline_metrics(&dir, &m.metrics);
                let _ = writeln!(text, "  entry    {}", dir.display());
                let _ = writeln!(text, "  finished {} ({:.1} s)", m.finished, m.duration_s);
                for (rel, out) in &m.outputs {
                    let _ = writeln!(
                        text,
                        "  output   {}  ({})",
                        dir.join(rel).display(),
                        crate::cache::store::human_size(out.size)
                    );
                }
                for (k, v) in &metrics {
                    let _ = writeln!(text, "  metric   {k} = {}", crate::report::metric_text(*v));
                }
                item["dir"] = json!(dir);
                item["outputs"] = json!(m.outputs.keys().map(|rel| dir.join(rel)).collect::<Vec<_>>());
                item["metrics"] = json!(metrics);
            }
            None => {
                let _ = writeln!(
                    text,
                    "  not run yet: `difflow run {} --target {}`",
                    s.file.display(),
                    shell_word(&inst.name)
                );
            }
        }
        if let Some((setting, n, summaries)) = replicate_summaries(s, &inst.name) {
            let shown: Vec<String> =
                summaries.iter().map(|(k, v)| format!("{k} {}", replicates::summary_text(v))).collect();
            let _ = writeln!(text, "  replicates of {setting} (n = {n}, mean ± 95 % CI): {}", shown.join(", "));
            let metrics: serde_json::Map<String, Json> =
                summaries.iter().map(|(k, v)| (k.clone(), replicates::summary_json(v))).collect();
            item["replicates"] = json!({ "setting": setting, "n": n, "metrics": metrics });
        }
        items.push(item);
    }
    Ok(if as_json {
        let v = if items.len() == 1 { items.pop().expect("one item") } else { Json::Array(items) };
        v.to_string() + "\n"
    } else {
        text
    })
}

/// For a replicate: its setting, how many of the setting's replicates have run, and each
/// metric's mean and interval over them.
fn replicate_summaries(s: &Session, name: &str) -> Option<(String, usize, BTreeMap<String, Summary>)> {
    let setting = replicates::setting_of(name)?;
    let metrics: Vec<BTreeMap<String, f64>> = s
        .pipeline
        .instances
        .iter()
        .filter(|i| replicates::setting_of(&i.name).as_deref() == Some(setting.as_str()))
        .filter_map(|i| {
            let key = s.keys.key(&i.name);
            let manifest = s.cache.manifest(key)?;
            Some(headline_metrics(&s.cache.entry_dir(key), &manifest.metrics))
        })
        .collect();
    if metrics.is_empty() {
        return None;
    }
    Some((setting, metrics.len(), replicates::summaries(metrics.iter())))
}

fn variant_suffix(v: &str) -> String {
    if v.is_empty() || v == "default" {
        String::new()
    } else {
        format!(" = {v}")
    }
}

fn shell_word(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        s.to_string()
    } else {
        format!("'{s}'")
    }
}

/// The schedule of a resolved `schedule` config (the resolver has filled every default).
pub fn schedule_spec(c: &Config) -> Result<ScheduleSpec, String> {
    ScheduleSpec::from_config(&c.to_json())
}

/// `{"t": [1…T], "beta": […], "alpha_bar": […], "snr": […]}`.
pub fn schedule_json(spec: &ScheduleSpec) -> Json {
    let tables = spec.tables();
    json!({
        "t": (1..=tables.steps()).collect::<Vec<_>>(),
        "beta": tables.betas,
        "alpha_bar": tables.alphas_cumprod,
        "snr": tables.snr,
    })
}

pub fn schedule_table(name: &str, spec: &ScheduleSpec) -> String {
    let tables = spec.tables();
    let mut out = format!(
        "schedule {name}: {} steps\n{:>6}  {:>14}  {:>14}  {:>14}\n",
        tables.steps(),
        "t",
        "beta",
        "alpha_bar",
        "snr"
    );
    for i in 0..tables.steps() {
        let _ = writeln!(
            out,
            "{:>6}  {:>14.6e}  {:>14.6e}  {:>14.6e}",
            i + 1,
            tables.betas[i],
            tables.alphas_cumprod[i],
            tables.snr[i]
        );
    }
    out
}

/// Ask the worker for the model's parameter count and per-level shapes (a `describe`
/// job: params `{"model": CONFIG, "shape": [C, H, W] or [D], "classes": N}`, the last two
/// when the data is known; it prints `{"params": N, "levels": [...]}` on stdout).
fn describe_model(s: &Session, name: &str, config: &Config, as_json: bool) -> Result<String, Failure> {
    // Building a python model runs the project's code: only in a trusted project.
    if config.variant == "python" {
        crate::project::trust::require(&s.pipeline)?;
    }
    let worker = worker_path()?;
    let meta = data_meta(s, config)?;
    let tmp = s.settings.state_dir().join("tmp").join(format!("describe-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| Failure::Failed(format!("cannot create {}: {e}", tmp.display())))?;
    let job = Job {
        instance: name.to_string(),
        kind: "describe".into(),
        variant: config.variant.clone(),
        params: describe_params(config, &meta),
        inputs: Default::default(),
        out_dir: tmp.clone(),
        device: "cpu".into(),
        settings: JobSettings { inception_weights: None, threads: s.settings.threads, limits: s.settings.limits },
    };
    let result = run_worker(&worker, &job, &tmp.join("job.json"), 1, &Progress::plain(), name);
    let _ = std::fs::remove_dir_all(&tmp);
    let out = result.map_err(|f| match f {
        WorkerFailure::Stage(m) => Failure::Usage(m),
        WorkerFailure::Crash(m) | WorkerFailure::Launch(m) | WorkerFailure::Interrupted(m) => Failure::Failed(m),
    })?;
    let answer = out
        .other_stdout
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str::<Json>(l).ok().filter(|v| v.get("params").is_some()))
        .ok_or_else(|| Failure::Failed("the worker did not describe the model".into()))?;
    if as_json {
        return Ok(answer.to_string() + "\n");
    }
    let params = answer["params"].as_u64().unwrap_or(0);
    let mut text = format!("model {name} ({}): {} parameters\n", config.variant, grouped(params));
    if let Some(levels) = answer.get("levels").and_then(Json::as_array) {
        for (i, level) in levels.iter().enumerate() {
            let shown = match (level.get("resolution"), level.get("channels")) {
                (Some(r), Some(c)) => format!(
                    "{r}×{r}, {c} channels{}",
                    if level.get("attention") == Some(&Json::Bool(true)) { ", attention" } else { "" }
                ),
                _ => level.to_string(),
            };
            let _ = writeln!(text, "  level {i}: {shown}");
        }
    }
    Ok(text)
}

fn describe_params(config: &Config, meta: &Json) -> Json {
    // Without data: 3 × 32 × 32 images, or 2-D points for an `mlp` (the toy data); an
    // encoder's head has 10 classes unless the data says otherwise.
    let shape = meta.get("shape").filter(|v| !v.is_null()).cloned().unwrap_or_else(|| match config.variant.as_str() {
        "mlp" => json!([2]),
        _ => json!([3, 32, 32]),
    });
    let classes = meta.get("classes").filter(|v| !v.is_null()).cloned().unwrap_or(json!(10));
    json!({ "model": config.to_json(), "shape": shape, "classes": classes })
}

/// What the worker should assume about the model's input: the `meta.json` of the data
/// of a stage that trains this model if it ran (checked against the declaration: the
/// worker allocates by it), else what the dataset declaration says.
fn data_meta(s: &Session, config: &Config) -> Result<Json, Failure> {
    let model = Value::Config(config.clone());
    let data = s.pipeline.instances.iter().find_map(|i| match (i.params.get("model"), i.params.get("data")) {
        (Some(m), Some(Value::Stage(d))) if *m == model => s.pipeline.instance(d),
        _ => None,
    });
    let Some(data) = data else { return Ok(Json::Null) };
    let params = Config { kind: data.kind.clone(), variant: data.variant.clone(), params: data.params.clone() };
    let dataset: Option<DatasetParams> = difflow_core::params::decode(&params.to_json(), &data.name).ok();
    let declared = match dataset.and_then(|d| d.shape()) {
        Some(d) if d.points => json!({ "type": "points", "shape": [d.channels], "classes": d.classes }),
        Some(d) => json!({ "type": "images", "shape": [d.channels, d.size, d.size], "classes": d.classes }),
        None => Json::Null,
    };
    let path = s.cache.entry_dir(s.keys.key(&data.name)).join("meta.json");
    let cached = match difflow_core::files::read_text_if_present(&path, difflow_core::files::Purpose::Metadata) {
        Ok(Some(text)) => serde_json::from_str::<Json>(&text).ok(),
        Ok(None) => None,
        Err(e) => return Err(Failure::Failed(format!("cannot read {}: {e}", path.display()))),
    };
    let Some(meta) = cached else { return Ok(declared) };
    meta_problem(&meta, &declared, &s.settings.limits).map_or(Ok(meta), |why| {
        Err(Failure::Failed(format!(
            "{}: {why}; the cache entry of `{}` was changed after its run: run it again with \
             `difflow run {} --force --target {}`",
            path.display(),
            data.name,
            s.file.display(),
            shell_word(&data.name)
        )))
    })
}

/// Why a cached dataset's `meta.json` cannot be what its run wrote: a shape no dataset
/// kind produces (one size for points; channels × size × size with the `images` dataset's
/// channel range for images), beyond the memory limit, or not the declared one.
fn meta_problem(meta: &Json, declared: &Json, limits: &difflow_core::net_size::SizeLimits) -> Option<String> {
    let shape: Option<Vec<i64>> =
        meta.get("shape").and_then(Json::as_array).and_then(|dims| dims.iter().map(Json::as_i64).collect());
    let Some(shape) = shape else {
        return Some("`shape` is not a list of integers".into());
    };
    let channels = crate::schema::key("dataset", "images", "channels").map_or(crate::schema::Range::ANY, |k| k.range);
    let fits = match shape[..] {
        [d] => d >= 1,
        [c, h, w] => channels.contains(c as f64) && h >= 1 && h == w,
        _ => false,
    };
    let elements = shape.iter().try_fold(1u64, |n, &d| u64::try_from(d).ok().and_then(|d| n.checked_mul(d)));
    let bytes = elements.and_then(|n| n.checked_mul(4));
    if !fits || bytes.is_none_or(|b| b > limits.max_memory) {
        return Some(format!("`shape` {shape:?} is no shape a dataset produces"));
    }
    let classes = meta.get("classes").and_then(Json::as_i64);
    if classes.is_none_or(|c| c < 0) {
        return Some("`classes` is not a count".into());
    }
    if !declared.is_null()
        && (meta.get("shape") != declared.get("shape") || meta.get("classes") != declared.get("classes"))
    {
        return Some(format!(
            "it says shape {} with {} classes, but the declaration gives shape {} with {} classes",
            meta["shape"], meta["classes"], declared["shape"], declared["classes"]
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule config with the schema's defaults filled in, as the resolver fills them.
    fn config(variant: &str, params: Vec<(&str, Value)>) -> Config {
        let mut filled: std::collections::BTreeMap<String, Value> = crate::schema::variant("schedule", variant)
            .unwrap()
            .keys
            .iter()
            .filter_map(|k| Some((k.name.to_string(), crate::schema::default_value(k)?)))
            .collect();
        filled.extend(params.into_iter().map(|(k, v)| (k.to_string(), v)));
        Config { kind: "schedule".into(), variant: variant.into(), params: filled }
    }

    #[test]
    fn schedule_json_matches_the_tables() {
        let spec = schedule_spec(&config("cosine", vec![("steps", Value::Int(10))])).unwrap();
        assert_eq!(spec, ScheduleSpec::Cosine { steps: 10, s: 0.008, max_beta: 0.999, zero_terminal_snr: false });
        let j = schedule_json(&spec);
        let tables = spec.tables();
        assert_eq!(j["t"].as_array().unwrap().len(), 10);
        assert_eq!(j["t"][0], 1);
        assert_eq!(j["beta"][3].as_f64().unwrap(), tables.betas[3]);
        assert_eq!(j["alpha_bar"][9].as_f64().unwrap(), tables.alphas_cumprod[9]);
        assert_eq!(j["snr"][0].as_f64().unwrap(), tables.snr[0]);
    }

    #[test]
    fn schedule_keys_are_read_with_defaults() {
        let spec = schedule_spec(&config(
            "linear",
            vec![("steps", Value::Int(100)), ("end", Value::Float(0.01)), ("scale_with_steps", Value::Bool(false))],
        ))
        .unwrap();
        assert_eq!(
            spec,
            ScheduleSpec::Linear {
                steps: 100,
                start: 1e-4,
                end: 0.01,
                scale_with_steps: false,
                zero_terminal_snr: false
            }
        );
        assert!(schedule_spec(&config("linear", vec![("steps", Value::Int(0))])).is_err());
        let table = schedule_table("lin", &spec);
        assert_eq!(table.lines().count(), 102);
    }
}
