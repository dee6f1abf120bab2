//! `difflow.lock` beside the pipeline: after each run, every stage instance's key, output
//! digests and headline metrics, so that a collaborator can see whether they reproduced the
//! same thing, and so that `difflow plan` can say what changed since. Pipelines that share
//! a folder share the file: the first one recorded owns the top-level `pipeline` and
//! `stages` (the layout of a folder with one pipeline), each other one has a section
//! `[pipelines."NAME.diff".stages.…]`, so no run overwrites another pipeline's record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "difflow.lock";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    /// The pipeline file (name only) whose record `stages` is. Several pipelines may
    /// share a folder, and so a lock file: a record of another pipeline is no previous
    /// state of this one (its `digits` may be another dataset altogether).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub stages: BTreeMap<String, LockedStage>,
    /// The records of the other pipelines in the folder, by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pipelines: BTreeMap<String, PipelineRecord>,
}

/// One more pipeline's record in a shared lock file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineRecord {
    #[serde(default)]
    pub stages: BTreeMap<String, LockedStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedStage {
    pub key: String,
    pub kind: String,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// For a training run: the step counts of every cached run of the same training
    /// (snapshots and longer or shorter runs), which later runs continue from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<u64>,
    /// The device the entry was computed on (`cpu`, `cuda:0`), when its worker said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// The threads of CPU tensor work it was computed with, when its worker said.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub threads: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Where the lock file of a pipeline lives: `difflow.lock` beside it.
pub fn lock_path(pipeline_file: &Path) -> PathBuf {
    pipeline_file.parent().unwrap_or(Path::new(".")).join(LOCK_FILE)
}

impl LockFile {
    /// The lock file, or an empty one when it is missing or unreadable (it is a record,
    /// never an input to a result).
    pub fn read(path: &Path) -> LockFile {
        std::fs::read_to_string(path).ok().and_then(|t| toml::from_str(&t).ok()).unwrap_or_default()
    }

    /// The record of `pipeline_file`'s last run (top-level or its section): empty when
    /// the lock file holds none.
    pub fn read_for(path: &Path, pipeline_file: &Path) -> LockFile {
        LockFile::read(path).record_of(file_name(pipeline_file))
    }

    /// `name`'s record alone, as the top-level one. A file that names no pipeline (written
    /// before records were named) counts as any pipeline's.
    pub fn record_of(&self, name: Option<String>) -> LockFile {
        let stages = match (&self.pipeline, &name) {
            (Some(owner), Some(n)) if owner != n => self.pipelines.get(n).map(|r| r.stages.clone()).unwrap_or_default(),
            _ => self.stages.clone(),
        };
        LockFile { pipeline: name, stages, pipelines: BTreeMap::new() }
    }

    /// This file with `name`'s record replaced by `stages`: at the top level when the file
    /// is empty, names no pipeline or names this one; else in its section.
    pub fn with_record(mut self, name: Option<String>, stages: BTreeMap<String, LockedStage>) -> LockFile {
        let owns_top = match (&self.pipeline, &name) {
            (Some(owner), Some(n)) => owner == n,
            _ => true,
        };
        if owns_top {
            if let Some(n) = &name {
                self.pipelines.remove(n);
            }
            self.pipeline = name;
            self.stages = stages;
        } else if let Some(n) = name {
            self.pipelines.insert(n, PipelineRecord { stages });
        }
        self
    }

    /// Every record, the top-level one first: (pipeline name, stages).
    pub fn records(&self) -> Vec<(Option<&str>, &BTreeMap<String, LockedStage>)> {
        let top = std::iter::once((self.pipeline.as_deref(), &self.stages));
        top.chain(self.pipelines.iter().map(|(n, r)| (Some(n.as_str()), &r.stages))).collect()
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let body = toml::to_string(self).map_err(std::io::Error::other)?;
        let text = format!(
            "# Written by `difflow run`: each stage instance's cache key, output digests and headline\n\
             # metrics. Commit it to let collaborators check that they reproduced the same results.\n\n{body}"
        );
        let tmp = path.with_extension(format!("lock.tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

/// The name a lock file records for a pipeline file.
pub fn file_name(pipeline_file: &Path) -> Option<String> {
    pipeline_file.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Headline metrics of an entry: the numbers in its `metrics.json` (nested objects as
/// dotted names), else what the worker reported as metric events.
pub fn headline_metrics(entry_dir: &Path, reported: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(json) = std::fs::read(entry_dir.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    {
        flatten_numbers("", &json, &mut out);
    }
    if out.is_empty() {
        out = reported.clone();
    }
    out
}

fn flatten_numbers(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_string(), x);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_numbers(&name, x, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LOCK_FILE);
        let mut lock = LockFile::default();
        lock.stages.insert(
            "gen[scale=0.5]".into(),
            LockedStage {
                key: "ab12".into(),
                kind: "sample".into(),
                metrics: [("fid".to_string(), 12.5)].into_iter().collect(),
                outputs: [("grid.png".to_string(), "ff00".to_string())].into_iter().collect(),
                steps: vec![],
                device: "cuda:0".into(),
                threads: 4,
            },
        );
        lock.write(&path).unwrap();
        assert_eq!(LockFile::read(&path), lock);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Written by `difflow run`"));
        assert!(text.contains("device = \"cuda:0\"\nthreads = 4\n"), "{text}");
        assert_eq!(LockFile::read(&d.path().join("none")), LockFile::default());
    }

    #[test]
    fn pipelines_sharing_a_folder_keep_their_own_records() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LOCK_FILE);
        let stage = |key: &str| LockedStage {
            key: key.into(),
            kind: "train".into(),
            metrics: BTreeMap::new(),
            outputs: BTreeMap::new(),
            steps: vec![],
            device: String::new(),
            threads: 0,
        };
        let record = |key: &str| [("ddpm".to_string(), stage(key))].into_iter().collect::<BTreeMap<_, _>>();
        let (a, b) = (Some("a.diff".to_string()), Some("b.diff".to_string()));
        let lock = LockFile::default().with_record(a.clone(), record("k1")).with_record(b.clone(), record("k2"));
        lock.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("pipeline = \"a.diff\"") && text.contains("[pipelines.\"b.diff\".stages.ddpm]"),
            "{text}"
        );
        assert_eq!(LockFile::read_for(&path, Path::new("a.diff")).stages["ddpm"].key, "k1");
        assert_eq!(LockFile::read_for(&path, Path::new("b.diff")).stages["ddpm"].key, "k2");
        assert!(LockFile::read_for(&path, Path::new("c.diff")).stages.is_empty());
        // A later run of either replaces its own record only; the layout stays put.
        let again = LockFile::read(&path).with_record(b, record("k3")).with_record(a, record("k4"));
        assert_eq!((again.pipeline.as_deref(), again.stages["ddpm"].key.as_str()), (Some("a.diff"), "k4"));
        assert_eq!(again.pipelines["b.diff"].stages["ddpm"].key, "k3");
    }

    #[test]
    fn metrics_json_wins_over_reported_events() {
        let d = tempfile::tempdir().unwrap();
        let reported = [("loss".to_string(), 0.25)].into_iter().collect();
        assert_eq!(headline_metrics(d.path(), &reported), reported);
        std::fs::write(d.path().join("metrics.json"), r#"{"fid": 3.5, "is": {"mean": 9.1, "std": 0.2}, "n": "x"}"#)
            .unwrap();
        let m = headline_metrics(d.path(), &reported);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["fid", "is.mean", "is.std"]);
        assert_eq!(m["fid"], 3.5);
    }
}
