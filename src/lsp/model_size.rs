//! A model's parameter count for hover. Only the worker (libtorch) knows it, and asking
//! takes about a second, so it is asked on a thread once per model config: hover waits a
//! little for the answer and otherwise says it is coming; the next hover has it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exec::{self, Session};
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
    /// `N parameters`, or why not (yet).
    pub fn describe(&self, file: &Path, pipeline: &Pipeline, name: &str) -> Option<String> {
        let config = pipeline.configs.get(name).filter(|c| c.kind == "model")?;
        let key = (file.to_path_buf(), config.to_json().to_string());
        let started = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = !known.contains_key(&key);
            known.entry(key.clone()).or_insert(None);
            fresh
        };
        if started {
            let (known, file, pipeline, name) =
                (self.known.clone(), file.to_path_buf(), pipeline.clone(), name.to_string());
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

fn ask_worker(file: &Path, pipeline: &Pipeline, name: &str) -> Result<u64, String> {
    let session = Session::new(file, pipeline)?;
    let answer = exec::show::show(&session, name, true).map_err(|e| match e {
        exec::show::ShowError::Wrong(m) | exec::show::ShowError::Failed(m) => m,
    })?;
    let json: serde_json::Value = serde_json::from_str(answer.trim()).map_err(|e| e.to_string())?;
    json["params"].as_u64().ok_or_else(|| "the worker gave no parameter count".into())
}
