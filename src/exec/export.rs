//! `difflow export FILE STAGE --format diffusers --out DIR`: a finished train (or
//! pretrained) stage written in another library's format. The front end finds the stage's
//! cache entry; the worker, which holds the tensors' library, writes the folder (an
//! `export` job: params `{"from": {"$stage": NAME}, "format": FORMAT}`, `out_dir` = DIR).

use std::path::Path;

use super::show::ShowError;
use super::worker::{run_worker, worker_path, Progress, WorkerFailure};
use super::Session;
use crate::graph;
use crate::job::{Input, Job, JobSettings};

/// The formats `export` writes.
pub const FORMATS: [&str; 1] = ["diffusers"];

/// A train or pretrained stage: what export can write.
fn is_trained_model(s: &Session, i: usize) -> bool {
    matches!(s.instance(i).kind.as_str(), "train" | "pretrained")
}

/// The stages of the pipeline that export can write, as the end of a message.
fn exportable_stages(s: &Session) -> String {
    let names: Vec<String> = (0..s.pipeline.instances.len())
        .filter(|&i| is_trained_model(s, i))
        .map(|i| format!("`{}`", s.instance(i).name))
        .collect();
    if names.is_empty() {
        "this pipeline has no train or pretrained stage".to_string()
    } else {
        format!("the stages it can export: {}", names.join(", "))
    }
}

pub fn export(s: &Session, name: &str, format: &str, out: &Path) -> Result<(), ShowError> {
    if !FORMATS.contains(&format) {
        return Err(ShowError::Wrong(format!("unknown format `{format}` (available: {})", FORMATS.join(", "))));
    }
    let indices = graph::resolve_names(&s.pipeline, &s.graph, &[name.to_string()]).map_err(ShowError::Wrong)?;
    let exportable: Vec<usize> = indices.iter().copied().filter(|&i| is_trained_model(s, i)).collect();
    if exportable.is_empty() {
        let kind = indices.first().map_or("", |&i| s.instance(i).kind.as_str());
        return Err(ShowError::Wrong(format!(
            "`{name}` is a {kind} stage: export writes a trained model; {}",
            exportable_stages(s)
        )));
    }
    let [i] = exportable[..] else {
        return Err(ShowError::Wrong(format!(
            "`{name}` names {} instances: export one, e.g. `{}`",
            exportable.len(),
            s.instance(exportable[0]).name
        )));
    };
    let inst = s.instance(i);
    let key = s.key(i);
    if s.cache.manifest(key).is_none() {
        return Err(ShowError::Wrong(format!(
            "`{name}` has not run yet: `difflow run {} --target {name}` first",
            s.file.display()
        )));
    }
    if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(ShowError::Wrong(format!("{} exists and is not empty: export writes a new folder", out.display())));
    }
    let out = std::path::absolute(out).map_err(|e| ShowError::Wrong(format!("{}: {e}", out.display())))?;
    std::fs::create_dir_all(&out).map_err(|e| ShowError::Failed(format!("cannot create {}: {e}", out.display())))?;
    let params = |i: &crate::lang::pipeline::Instance| {
        serde_json::Value::Object(i.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
    };
    let input = Input {
        kind: inst.kind.clone(),
        variant: inst.variant.clone(),
        params: params(inst),
        dir: s.cache.entry_dir(key),
    };
    let job = Job {
        instance: format!("export {}", inst.name),
        kind: "export".into(),
        variant: format.into(),
        params: serde_json::json!({"from": {"$stage": inst.name}, "format": format}),
        inputs: [(inst.name.clone(), input)].into(),
        out_dir: out.clone(),
        device: "cpu".into(),
        settings: JobSettings { inception_weights: None, threads: s.settings.threads },
    };
    let worker = worker_path().map_err(ShowError::Failed)?;
    let tmp = s.settings.state_dir().join("tmp").join(format!("export-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| ShowError::Failed(format!("cannot create {}: {e}", tmp.display())))?;
    let result = run_worker(&worker, &job, &tmp.join("job.json"), 1, &Progress::plain(), &inst.name);
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(f) = result {
        // Nothing half-written stays behind.
        let _ = std::fs::remove_dir_all(&out);
        return Err(match f {
            WorkerFailure::Stage(m) => ShowError::Wrong(m),
            WorkerFailure::Crash(m) | WorkerFailure::Launch(m) | WorkerFailure::Interrupted(m) => ShowError::Failed(m),
        });
    }
    Ok(())
}
