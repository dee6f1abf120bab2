//! Typed access to a job's parameters (and to config objects inside them), with errors
//! that name the key. The checker has already filled defaults and validated types, so a
//! failure here means a hand-written or stale job file; the `_or` accessors supply the
//! documented defaults for keys a hand-written job leaves out.

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::job::{Input, Job};
use serde_json::Value;

/// A JSON object of parameters, named for messages (`train \`ddpm\``, `sampler of \`gen\``).
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    value: &'a Value,
    what: &'a str,
}

impl<'a> Params<'a> {
    pub fn new(value: &'a Value, what: &'a str) -> Params<'a> {
        Params { value, what }
    }

    /// The job's own parameters.
    pub fn of_job(job: &'a Job) -> Params<'a> {
        Params { value: &job.params, what: &job.instance }
    }

    pub fn raw(&self) -> &'a Value {
        self.value
    }

    /// The value of `key`, or None when it is absent or null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    fn require(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| anyhow!("`{}` needs the key `{key}`", self.what))
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> anyhow::Error {
        anyhow!("`{}`: the key `{key}` must be {want}, not {got}", self.what)
    }

    /// A config object's variant (`"cosine"`, `"ddim"`, …).
    pub fn variant(&self) -> Result<&'a str> {
        self.str("variant")
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        as_usize(v).ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        if self.get(key).is_some() {
            self.usize(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        if self.get(key).is_some() {
            self.f64(key)
        } else {
            Ok(default)
        }
    }

    pub fn str(&self, key: &str) -> Result<&'a str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "a string", v))
    }

    pub fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str> {
        if self.get(key).is_some() {
            self.str(key)
        } else {
            Ok(default)
        }
    }

    pub fn bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong(key, "true or false", v))
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        if self.get(key).is_some() {
            self.bool(key)
        } else {
            Ok(default)
        }
    }

    pub fn list(&self, key: &str) -> Result<&'a [Value]> {
        let v = self.require(key)?;
        v.as_array().map(Vec::as_slice).ok_or_else(|| self.wrong(key, "a list", v))
    }

    /// A config object (`schedule`, `sampler`, `model`, …).
    pub fn config(&self, key: &str) -> Result<Params<'a>> {
        let v = self.require(key)?;
        if !v.is_object() {
            return Err(self.wrong(key, "a configuration block", v));
        }
        Ok(Params { value: v, what: self.what })
    }

    pub fn opt_config(&self, key: &str) -> Result<Option<Params<'a>>> {
        if self.get(key).is_some() {
            self.config(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The upstream stage named by `{"$stage": NAME}` under `key`.
    pub fn stage(&self, job: &'a Job, key: &str) -> Result<(&'a str, &'a Input)> {
        let v = self.require(key)?;
        stage_ref(job, v).with_context(|| format!("`{}`: the key `{key}`", self.what))
    }

    /// Every upstream stage in the list under `key` (a single reference counts as a list of one).
    pub fn stages(&self, job: &'a Job, key: &str) -> Result<Vec<(&'a str, &'a Input)>> {
        let v = self.require(key)?;
        let items: Vec<&Value> = match v.as_array() {
            Some(items) => items.iter().collect(),
            None => vec![v],
        };
        items
            .into_iter()
            .map(|item| stage_ref(job, item).with_context(|| format!("`{}`: the key `{key}`", self.what)))
            .collect()
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    if let Some(u) = v.as_u64() {
        return usize::try_from(u).ok();
    }
    // `1e4` arrives as a float; accept it when it is a whole number.
    v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e15).map(|f| f as usize)
}

fn stage_ref<'a>(job: &'a Job, v: &Value) -> Result<(&'a str, &'a Input)> {
    let Some(name) = v.get("$stage").and_then(Value::as_str) else {
        bail!("expected a reference to a stage, got {v}");
    };
    let (name, input) = job
        .inputs
        .get_key_value(name)
        .ok_or_else(|| anyhow!("the job lists no input for the stage `{name}` (a stale or hand-written job file?)"))?;
    Ok((name.as_str(), input))
}
