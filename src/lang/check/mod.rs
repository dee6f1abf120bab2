//! Cross-stage checks on a resolved pipeline: contradictions between stages that would
//! otherwise fail (or silently produce nonsense) hours into a run. Per-key
//! checks (types, ranges, required keys) happen during resolution, driven by the schema.

use std::collections::HashMap;

use difflow_core::net_size::SizeLimits;
use difflow_core::params::dataset::{DataShape, DatasetParams};
use difflow_core::params::sample::SampleParams;

use crate::diagnostics::{Code, Diagnostic};
use crate::lang::pipeline::{Instance, Pipeline};
use crate::lang::value::{Config, Value};
use crate::syntax::ast::Span;

use super::resolve::SpanTable;

#[cfg(test)]
mod agree_tests;
mod configs;
mod metrics;
mod model;
mod plot;
mod pretrained;
mod python;
mod sample;
pub mod script;
mod steps;
mod train;

/// What a stage's data looks like, as far as the checker can tell without reading it.
#[derive(Debug, Clone, PartialEq)]
struct Data {
    points: bool,
    /// Image channels (or the dimension of points).
    channels: i64,
    /// Image side in pixels (0 for points).
    size: i64,
    classes: i64,
    /// Examples available, when known.
    examples: Option<i64>,
    /// The dataset declaration it comes from.
    origin: String,
}

impl Data {
    fn describe(&self) -> String {
        if self.points {
            format!("{}-D points", self.channels)
        } else {
            format!("{}×{}×{} images", self.channels, self.size, self.size)
        }
    }
    fn same_shape(&self, other: &Data) -> bool {
        self.points == other.points && self.channels == other.channels && self.size == other.size
    }
}

struct Checker<'p> {
    spans: &'p SpanTable,
    /// The pipeline's folder, and which folders project files may be read from.
    root: &'p std::path::Path,
    policy: crate::lang::use_policy::UsePolicy,
    /// The largest model a `pretrained` folder may describe (from `difflow.toml`).
    limits: &'p SizeLimits,
    by_name: HashMap<&'p str, &'p Instance>,
    diags: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// What the checker found: errors, and warnings that do not stop a run.
pub(crate) struct Checked {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

pub(crate) fn check(pipeline: &Pipeline, spans: &SpanTable, limits: &SizeLimits) -> Checked {
    let mut c = Checker {
        spans,
        root: &pipeline.root,
        policy: crate::lang::use_policy::UsePolicy::for_pipeline(&pipeline.root).0,
        limits,
        by_name: pipeline.instances.iter().map(|i| (i.name.as_str(), i)).collect(),
        diags: Vec::new(),
        warnings: Vec::new(),
    };
    for (name, config) in &pipeline.configs {
        let decl = name.split('[').next().unwrap_or(name);
        c.config(config, decl, "");
    }
    for inst in &pipeline.instances {
        for (key, v) in &inst.params {
            if let Value::Config(cfg) = v {
                c.config(cfg, &inst.decl, key);
            }
        }
        match inst.kind.as_str() {
            "dataset" => c.dataset(inst),
            "train" => c.train(inst),
            "pretrained" => c.pretrained(inst),
            "classifier" => c.classifier(inst),
            "sample" => c.sample(inst),
            "metrics" => c.metrics(inst),
            "nll" => c.nll(inst),
            "plot" => c.plot(inst),
            "script" => c.script(inst),
            _ => {}
        }
        match (inst.kind.as_str(), inst.variant.as_str()) {
            ("metrics", _) => c.samples_from_script(inst, "samples"),
            ("plot", "grid") => c.samples_from_script(inst, "of"),
            _ => {}
        }
        if matches!(inst.kind.as_str(), "sample" | "nll" | "metrics") {
            c.training_step(inst);
        }
    }
    Checked { errors: c.diags, warnings: c.warnings }
}

fn get<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v Value> {
    params.get(key)
}
fn int(params: &std::collections::BTreeMap<String, Value>, key: &str) -> Option<i64> {
    match get(params, key)? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}
fn float(params: &std::collections::BTreeMap<String, Value>, key: &str) -> Option<f64> {
    match get(params, key)? {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}
fn string<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v str> {
    match get(params, key)? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}
fn config<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v Config> {
    match get(params, key)? {
        Value::Config(c) => Some(c),
        _ => None,
    }
}
fn stage<'v>(params: &'v std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'v str> {
    match get(params, key)? {
        Value::Stage(s) => Some(s),
        _ => None,
    }
}
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'p> Checker<'p> {
    /// Where to point for a key path of an instance's declaration: in the declaration's own
    /// file (a preset's key written in another file is shown by the key that names it).
    fn at(&self, inst: &Instance, path: &str) -> Span {
        let file = self.spans.decl(&inst.decl).map_or(inst.span.file, |s| s.file);
        let mut p = path;
        loop {
            if let Some(s) = self.span(&inst.decl, p).filter(|s| s.file == file) {
                return s;
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.decl_span(inst),
            }
        }
    }

    /// The span of a key path, falling back to shorter prefixes and the declaration.
    fn span(&self, decl: &str, path: &str) -> Option<Span> {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.value(decl, p) {
                return Some(s);
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.spans.decl(decl),
            }
        }
    }

    fn decl_span(&self, inst: &Instance) -> Span {
        self.spans.decl(&inst.decl).unwrap_or(inst.span)
    }

    /// A diagnostic pointing at the key path `path` of `inst` (see [`Self::at`]).
    fn error(
        &self,
        inst: &Instance,
        path: &str,
        code: Code,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::new(code, message, self.at(inst, path), label)
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn warn(&mut self, d: Diagnostic) {
        self.warnings.push(d);
    }

    fn inst(&self, name: &str) -> Option<&'p Instance> {
        self.by_name.get(name).copied()
    }

    fn data(&self, inst: &Instance) -> Option<Data> {
        let p = &inst.params;
        match inst.kind.as_str() {
            "dataset" => {
                let dataset = configs::typed_stage::<DatasetParams>(inst)?;
                let DataShape { points, channels, size, classes } = dataset.shape()?;
                let examples = dataset.examples().map(|n| n as i64);
                Some(Data { points, channels, size, classes, examples, origin: inst.name.clone() })
            }
            "train" | "classifier" => self.data(self.inst(stage(p, "data")?)?),
            "pretrained" => {
                let net = self.pretrained_model(inst)?.net;
                let (channels, size, classes) = (net.in_channels, net.size, net.classes);
                Some(Data { points: false, channels, size, classes, examples: None, origin: inst.name.clone() })
            }
            "sample" => {
                let sample = configs::typed_stage::<SampleParams>(inst)?;
                let mut d = self.data(self.inst(&sample.from.name)?)?;
                d.examples = Some(sample.count as i64);
                Some(d)
            }
            _ => None,
        }
    }
}
