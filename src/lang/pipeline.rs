//! A checked pipeline: the stage instances (sweeps expanded) and the named configs. This is
//! the interface between the front end and the graph, cache and executor.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::value::{Config, Value};
use crate::syntax::ast::Span;

#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// The folder relative paths in the pipeline are resolved against.
    pub root: PathBuf,
    /// Every stage instance, in declaration order (families expanded in sweep order).
    pub instances: Vec<Instance>,
    /// Named config declarations (schedules, models, samplers, guidance), resolved.
    pub configs: BTreeMap<String, Config>,
    /// Declaration name → the names of its instances (one for a plain declaration).
    pub families: BTreeMap<String, Vec<String>>,
    /// The text it was loaded from: what its reports show, and part of their keys.
    pub source: Source,
}

/// The text a pipeline was loaded from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The pipeline file, then each file on disk that it `use`s: (name as messages give
    /// it, text). The embedded stdlib is not here (the binary's version stands for it).
    pub files: Vec<(String, String)>,
    /// `--set NAME=VALUE` as given, in order.
    pub sets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Instance {
    /// `gen` or, in a family, `gen[scale=0.5]` (several coordinates comma-separated).
    pub name: String,
    /// The declaration this instance comes from (`gen`).
    pub decl: String,
    pub kind: String,
    pub variant: String,
    /// Every key of the variant, defaults filled in, configs inlined, stage references as
    /// [`Value::Stage`] with instance names.
    pub params: BTreeMap<String, Value>,
    /// The sweep coordinates that pick this instance out of its family, e.g.
    /// `[("scale", Float(0.5))]`; empty for a plain declaration.
    pub sweep: Vec<(String, Value)>,
    /// Where the declaration is written.
    pub span: Span,
}

impl Instance {
    /// The instances this one reads, in key order, without repeats.
    pub fn deps(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for v in self.params.values() {
            v.stage_refs(&mut out);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|n| seen.insert(*n));
        out
    }
}

impl Pipeline {
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }
}
