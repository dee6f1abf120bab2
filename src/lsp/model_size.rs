//! A model's parameter count for hover. Only the worker (libtorch) knows it, and asking
//! takes about a second, so it is asked on a thread once per model config: hover waits a
//! little for the answer and otherwise says it is coming; the next hover has it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exec::{self, Session};
use crate::lang::value::{Config, Value};
use crate::lang::Pipeline;

/// How long a hover waits for a count being computed.
const WAIT: Duration = Duration::from_millis(1500);

/// A pipeline file and a model config (as JSON).
type ModelKey = (PathBuf, String);

/// The parameter count, or why there is none; `None` while it is being computed.
type Answer = Option<Result<u64, String>>;

#[derive(Default, Clone)]
pub struct ModelSizes {
    known: Arc<Mutex<HashMap<ModelKey, Answer>>>,
}

impl ModelSizes {
    /// `N parameters`, or why not (yet). Only the model and the stages that train it (for
    /// their data's shape) are read, so `pipeline` may be the `partial` one of a file with
    /// errors (`checked` false); then a model no resolved stage trains has no count, since
    /// the stage that does may be among the errors.
    pub fn describe(&self, file: &Path, pipeline: &Pipeline, name: &str, checked: bool) -> Option<String> {
        let config = pipeline.configs.get(name).filter(|c| c.kind == "model")?;
        let pipeline = model_part(pipeline, name, config);
        if !checked && pipeline.instances.is_empty() {
            return Some("parameter count unavailable: the file has errors".into());
        }
        let key = (file.to_path_buf(), config.to_json().to_string());
        let started = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = !known.contains_key(&key);
            known.entry(key.clone()).or_insert(None);
            fresh
        };
        if started {
            let (known, file, name) = (self.known.clone(), file.to_path_buf(), name.to_string());
            let key = key.clone();
            std::thread::spawn(move || {
                let answer = ask_worker(&file, &pipeline, &name);
                known.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Some(answer));
            });
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned().flatten();
            match answer {
                Some(Ok(n)) => return Some(format!("{} parameters", crate::cache::continuation::grouped(n))),
                Some(Err(why)) => return Some(format!("parameter count unavailable: {why}")),
                None if Instant::now() >= deadline => {
                    return Some("parameter count: difflow-worker is still counting (hover again)".into())
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// What counting model `name` reads of `p`: its config, the stages that train it and
/// everything upstream of them (the data's shape decides the input layer). The rest of
/// a file with errors may not even form a graph.
fn model_part(p: &Pipeline, name: &str, config: &Config) -> Pipeline {
    let model = Value::Config(config.clone());
    let mut wanted: Vec<&str> =
        p.instances.iter().filter(|i| i.params.get("model") == Some(&model)).map(|i| i.name.as_str()).collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(next) = wanted.pop() {
        if let Some(inst) = p.instance(next).filter(|_| seen.insert(next)) {
            wanted.extend(inst.deps());
        }
    }
    Pipeline {
        root: p.root.clone(),
        instances: p.instances.iter().filter(|i| seen.contains(i.name.as_str())).cloned().collect(),
        configs: [(name.to_string(), config.clone())].into(),
        families: Default::default(),
        source: Default::default(),
    }
}

fn ask_worker(file: &Path, pipeline: &Pipeline, name: &str) -> Result<u64, String> {
    let session = Session::new(file, pipeline)?;
    let answer = exec::show::show(&session, name, true).map_err(|e| match e {
        exec::show::ShowError::Wrong(m) | exec::show::ShowError::Failed(m) => m,
    })?;
    let json: serde_json::Value = serde_json::from_str(answer.trim()).map_err(|e| e.to_string())?;
    json["params"].as_u64().ok_or_else(|| "the worker gave no parameter count".into())
}
