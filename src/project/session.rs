//! A pipeline opened as a project: its `difflow.toml` settings, the stage graph with the
//! implicit stages, every instance's key and the cache. The executor plans and runs a
//! session; the language server and `difflow show` ask it about a model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::settings::Settings;
use crate::cache::lockfile::lock_path;
use crate::cache::{compute_keys, Cache, Digests, StageKeys};
use crate::failure::Failure;
use crate::fetch;
use crate::graph::{self, StageGraph};
use crate::lang::pipeline::{Instance, Pipeline};

/// A pipeline ready to plan or run: implicit stages added, graph built, keys computed.
pub struct Session {
    pub file: PathBuf,
    pub settings: Settings,
    /// The pipeline with hidden statistics instances.
    pub pipeline: Pipeline,
    pub graph: StageGraph,
    pub keys: StageKeys,
    pub cache: Cache,
    pub lock_path: PathBuf,
}

impl Session {
    /// `file` is the pipeline file; `difflow.toml` and `difflow.lock` live beside it.
    /// Files that `difflow run` would fetch are only located here (see `crate::fetch`).
    /// A pipeline that cannot be opened is the user's to fix: [`Failure::Usage`].
    pub fn new(file: &Path, pipeline: &Pipeline) -> Result<Session, Failure> {
        // Absolute, so that paths printed and written to job files work from anywhere.
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let settings = Settings::load(dir).map_err(Failure::Usage)?;
        Session::with_settings(&file, pipeline, settings)
    }

    pub fn with_settings(file: &Path, pipeline: &Pipeline, settings: Settings) -> Result<Session, Failure> {
        // Before the keys: a fetched file is keyed by its content like any other.
        let (pipeline, inception) = fetch::fill_in(pipeline, &settings).map_err(Failure::Usage)?;
        let expanded = graph::expand_implicit(&pipeline, inception.as_deref());
        let g = StageGraph::new(&expanded).map_err(|e| Failure::Usage(e.to_string()))?;
        let mut digests = Digests::open(settings.state_dir().join("digests.json"), &settings.user_cache);
        let keys = compute_keys(&expanded, &g, &mut digests).map_err(Failure::Usage)?;
        // The memo only saves time; failing to store it must not stop anything.
        let _ = digests.save();
        Ok(Session {
            file: file.to_path_buf(),
            cache: Cache::new(settings.cache.clone()),
            lock_path: lock_path(file),
            settings,
            pipeline: expanded,
            graph: g,
            keys,
        })
    }

    /// The pipeline's file name, for commands suggested to the user.
    pub fn file_label(&self) -> String {
        self.file.file_name().map_or_else(|| self.file.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    pub fn instance(&self, i: usize) -> &Instance {
        &self.pipeline.instances[i]
    }

    pub fn key(&self, i: usize) -> &str {
        self.keys.key(&self.pipeline.instances[i].name)
    }

    /// Upstream key → instance name, for the inputs of `i`.
    pub(crate) fn input_names(&self, i: usize) -> HashMap<String, String> {
        self.graph.inputs(i).into_iter().map(|d| (self.key(d).to_string(), self.instance(d).name.clone())).collect()
    }

    /// Instance indices named by `--target`-style names, with their upstream closure, in
    /// topological order; everything when `names` is empty.
    pub fn selection(&self, names: &[String]) -> Result<Vec<usize>, Failure> {
        if names.is_empty() {
            return Ok(self.graph.order().to_vec());
        }
        let roots = graph::resolve_names(&self.pipeline, &self.graph, names).map_err(Failure::Usage)?;
        let closure = self.graph.upstream_closure(roots);
        Ok(self.graph.order().iter().copied().filter(|i| closure.contains(i)).collect())
    }
}
