//! Values after resolution: `let`s substituted, configs inlined, defaults filled in, sweeps
//! expanded. This is what stage keys are computed from and what the worker receives.

use std::collections::BTreeMap;

use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A file or folder the stage reads, resolved against the pipeline's folder (or the
    /// data root). The stage key holds the content digest, not the path.
    Path(String),
    List(Vec<Value>),
    /// A config kind (schedule, model, sampler, guidance) folded into its user.
    Config(Config),
    /// A reference to a stage instance, by instance name (`gen[scale=0.5]`).
    Stage(String),
    /// Named literals (`{ hidden = 64 }`), passed on as a JSON object.
    Record(BTreeMap<String, Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub kind: String,
    pub variant: String,
    pub params: BTreeMap<String, Value>,
}

impl Value {
    /// The JSON form the worker reads: configs become objects with `kind` and `variant`
    /// beside their keys, stage references `{"$stage": NAME}`, paths plain strings.
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_with(&mut |name| json!({ "$stage": name }), &mut |p| json!(p))
    }

    /// The JSON form with stage references and paths mapped by the caller (the cache
    /// key replaces them by upstream keys and content digests).
    pub fn to_json_with(
        &self,
        stage: &mut dyn FnMut(&str) -> serde_json::Value,
        path: &mut dyn FnMut(&str) -> serde_json::Value,
    ) -> serde_json::Value {
        match self {
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Float(f) => json!(f),
            Value::Str(s) => json!(s),
            Value::Path(p) => path(p),
            Value::List(items) => serde_json::Value::Array(items.iter().map(|v| v.to_json_with(stage, path)).collect()),
            Value::Config(c) => c.to_json_with(stage, path),
            Value::Stage(name) => stage(name),
            Value::Record(entries) => serde_json::Value::Object(
                entries.iter().map(|(k, v)| (k.clone(), v.to_json_with(stage, path))).collect(),
            ),
        }
    }

    /// Every stage instance this value refers to, in order.
    pub fn stage_refs<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Value::Stage(name) => out.push(name),
            Value::List(items) => items.iter().for_each(|v| v.stage_refs(out)),
            Value::Config(c) => c.params.values().for_each(|v| v.stage_refs(out)),
            Value::Record(entries) => entries.values().for_each(|v| v.stage_refs(out)),
            _ => {}
        }
    }

    /// How the value is written in a `.diff` file (used in instance names and messages).
    pub fn display(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Str(s) | Value::Path(s) => format!("{s:?}"),
            Value::List(items) => format!("[{}]", items.iter().map(Value::display).collect::<Vec<_>>().join(", ")),
            Value::Config(c) => format!(
                "{} {{ {} }}",
                c.variant,
                c.params.iter().map(|(k, v)| format!("{k} = {}", v.display())).collect::<Vec<_>>().join(", ")
            ),
            Value::Stage(name) => name.clone(),
            Value::Record(entries) => format!(
                "{{ {} }}",
                entries.iter().map(|(k, v)| format!("{k} = {}", v.display())).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

impl Config {
    pub fn to_json_with(
        &self,
        stage: &mut dyn FnMut(&str) -> serde_json::Value,
        path: &mut dyn FnMut(&str) -> serde_json::Value,
    ) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("kind".into(), json!(self.kind));
        map.insert("variant".into(), json!(self.variant));
        for (k, v) in &self.params {
            map.insert(k.clone(), v.to_json_with(stage, path));
        }
        serde_json::Value::Object(map)
    }

    pub fn to_json(&self) -> serde_json::Value {
        Value::Config(self.clone()).to_json()
    }
}

/// Shortest form that reads back as the same f64, always with a `.` or exponent so that
/// it stays a float (`2e-4` → `0.0002`, `1` → `1.0`).
pub fn format_float(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}
