//! `difflow export FILE STAGE --format diffusers --out DIR`: a finished train (or
//! pretrained) stage written in another library's format. The front end finds the stage's
//! cache entry; the worker, which holds the tensors' library, writes the folder (an
//! `export` job: params `{"from": {"$stage": NAME}, "format": FORMAT}`, `out_dir` = DIR).

use std::path::{Path, PathBuf};

use super::worker::{run_worker, worker_path, Progress, WorkerFailure};
use super::{Failure, Session};
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

pub fn export(s: &Session, name: &str, format: &str, out: &Path) -> Result<(), Failure> {
    if !FORMATS.contains(&format) {
        return Err(Failure::Usage(format!("unknown format `{format}` (available: {})", FORMATS.join(", "))));
    }
    let indices = graph::resolve_names(&s.pipeline, &s.graph, &[name.to_string()]).map_err(Failure::Usage)?;
    let exportable: Vec<usize> = indices.iter().copied().filter(|&i| is_trained_model(s, i)).collect();
    if exportable.is_empty() {
        let kind = indices.first().map_or("", |&i| s.instance(i).kind.as_str());
        return Err(Failure::Usage(format!(
            "`{name}` is a {kind} stage: export writes a trained model; {}",
            exportable_stages(s)
        )));
    }
    let [i] = exportable[..] else {
        return Err(Failure::Usage(format!(
            "`{name}` names {} instances: export one, e.g. `{}`",
            exportable.len(),
            s.instance(exportable[0]).name
        )));
    };
    let inst = s.instance(i);
    let key = s.key(i);
    if s.cache.manifest(key).is_none() {
        return Err(Failure::Usage(format!(
            "`{name}` has not run yet: `difflow run {} --target {name}` first",
            s.file.display()
        )));
    }
    let worker = worker_path()?;
    let (out, existed) = prepare_out(out)?;
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
        settings: JobSettings { inception_weights: None, threads: s.settings.threads, limits: s.settings.limits },
    };
    let tmp = s.settings.state_dir().join("tmp").join(format!("export-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        remove_written(&out, existed);
        return Err(Failure::Failed(format!("cannot create {}: {e}", tmp.display())));
    }
    let result = run_worker(&worker, &job, &tmp.join("job.json"), 1, &Progress::plain(), &inst.name);
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(f) = result {
        // Nothing half-written stays behind, and nothing that was there before goes.
        remove_written(&out, existed);
        return Err(match f {
            WorkerFailure::Stage(m) => Failure::Usage(m),
            WorkerFailure::Crash(m) | WorkerFailure::Launch(m) | WorkerFailure::Interrupted(m) => Failure::Failed(m),
        });
    }
    Ok(())
}

/// The absolute `--out` folder and whether it existed: a new path (created here), or an
/// existing empty folder (a symbolic link to one is followed, never replaced).
fn prepare_out(out: &Path) -> Result<(PathBuf, bool), Failure> {
    let shown = out.display();
    let absolute = std::path::absolute(out).map_err(|e| Failure::Usage(format!("{shown}: {e}")))?;
    match std::fs::symlink_metadata(&absolute) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&absolute).map_err(|e| Failure::Failed(format!("cannot create {shown}: {e}")))?;
            Ok((absolute, false))
        }
        Err(e) => Err(Failure::Failed(format!("cannot inspect {shown}: {e}"))),
        Ok(_) => {
            let empty = std::fs::read_dir(&absolute).map(|mut d| d.next().is_none());
            match empty {
                Ok(true) => Ok((absolute, true)),
                Ok(false) => {
                    Err(Failure::Usage(format!("{shown} exists and is not empty: export writes a new folder")))
                }
                Err(_) => Err(Failure::Usage(format!(
                    "{shown} exists and is not a folder: give a new path or an empty folder"
                ))),
            }
        }
    }
}

/// Removes what a failed export wrote: the folder it created, or the contents of the empty
/// folder it was given (which keeps the folder, or the link to it).
fn remove_written(out: &Path, existed: bool) {
    if !existed {
        let _ = std::fs::remove_dir_all(out);
        return;
    }
    let Ok(entries) = std::fs::read_dir(out) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_export_clears_the_folder_it_was_given_and_removes_one_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        let given = tmp.path().join("given");
        std::fs::create_dir_all(given.join("unet")).unwrap();
        std::fs::write(given.join("unet/config.json"), "{}").unwrap();
        std::fs::write(given.join("model_index.json"), "{}").unwrap();
        remove_written(&given, true);
        assert!(given.is_dir());
        assert_eq!(std::fs::read_dir(&given).unwrap().count(), 0);
        remove_written(&given, false);
        assert!(!given.exists());
    }
}
