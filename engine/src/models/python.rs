//! `model … = python { file, class, args }`: a `torch.nn.Module` written in Python, built as
//! `CLASS(**args)` from the module file and called as `forward(x, t, y)`, trained and
//! sampled by the engine like its own networks. Its parameters and buffers are registered
//! in the var store as the very tensors the module holds (one TensorImpl, no copy), under
//! their `named_parameters()` names: the engine's AdamW, EMA, checkpoints and weight files
//! act on the module itself, and a weights file is the module's `state_dict`.
//!
//! An exception in Python (importing the file, `__init__`, `forward`) or an output of the
//! wrong shape is an error naming the line of the user's file it came from.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyTuple};
use tch::{nn, Device, Tensor};

use super::{python_env, python_shim, ModelSpec};
use crate::data::DataMeta;

pub use difflow_core::params::model::PythonConfig;

/// A Python module as a [`super::Denoiser`].
pub struct PythonNet {
    module: Py<PyAny>,
    /// `FILE:CLASS`, for messages.
    name: String,
    file: String,
    /// `FILE:LINE` of the class's `forward`, where a wrong output shape is reported.
    forward_at: String,
    spec: ModelSpec,
    /// Whether the module holds a dropout layer with p > 0 (see `draws_in_training`).
    has_dropout: bool,
    /// The mode the module is in (`module.train(mode)`), so it changes only when asked to.
    training: AtomicBool,
}

impl PythonNet {
    /// Builds the module and registers its parameters (trainable) and buffers in `root`.
    pub fn new(root: &nn::Path, config: &PythonConfig, _data: &DataMeta) -> Result<PythonNet> {
        python_env::ensure_started()?;
        let file = config.file.canonicalize().with_context(|| format!("cannot find {}", config.file.display()))?;
        let source = difflow_core::files::read_text(&file, difflow_core::files::Purpose::Code)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let file_text = file.display().to_string();
        let name = format!("{}:{}", file_text, config.class);
        let net = Python::with_gil(|py| -> Result<PythonNet> {
            let traced = |e: PyErr| anyhow!(describe(py, &e, &file_text));
            let module = load_module(py, &file, &source).map_err(traced)?;
            let class = module
                .getattr(config.class.as_str())
                .map_err(|_| anyhow!("{} has no class `{}` (at its top level)", file_text, config.class))?;
            let kwargs = json_kwargs(py, &config.args).map_err(traced)?;
            let instance = class.call((), Some(&kwargs)).map_err(traced)?;
            if !instance.is_instance(&py.import("torch.nn")?.getattr("Module")?)? {
                bail!("{name}: `{}(**args)` is not a torch.nn.Module", config.class);
            }
            instance.call_method1("to", (device_name(root.device()),)).map_err(traced)?;
            instance.call_method1("train", (true,)).map_err(traced)?;
            register(root, &instance, "named_parameters", true).with_context(|| format!("{name}: parameters"))?;
            register(root, &instance, "named_buffers", false).with_context(|| format!("{name}: buffers"))?;
            let code = instance.getattr("forward")?.getattr("__code__")?;
            let forward_at = format!(
                "{}:{}",
                code.getattr("co_filename")?.extract::<String>()?,
                code.getattr("co_firstlineno")?.extract::<i64>()?
            );
            let has_dropout = has_dropout(py, &instance).map_err(traced)?;
            Ok(PythonNet {
                has_dropout,
                module: instance.unbind(),
                name: name.clone(),
                file: file_text.clone(),
                forward_at,
                spec: config.spec,
                training: AtomicBool::new(true),
            })
        })?;
        Ok(net)
    }

    /// `forward(x, t, y)` in Python; the output checked against `x`'s shape.
    fn call_forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let output = Python::with_gil(|py| -> Result<Tensor> {
            let traced = |e: PyErr| anyhow!("{} (in {}.forward)", describe(py, &e, &self.file), self.name);
            let module = self.module.bind(py);
            if self.training.swap(train, Ordering::Relaxed) != train {
                module.call_method1("train", (train,)).map_err(traced)?;
            }
            let y = match y {
                Some(y) => wrap(py, y)?,
                None => py.None().into_bound(py),
            };
            let args = PyTuple::new(py, [wrap(py, x)?, wrap(py, t)?, y])?;
            let out = module.call1(args).map_err(traced)?;
            // SAFETY: `out` is a live Python object for the duration of the call.
            let tensor = unsafe { python_shim::unpack(out.as_ptr()) }?;
            tensor.with_context(|| {
                format!(
                    "{}.forward returned a {}, not a tensor",
                    self.name,
                    out.get_type().name().map_or("?".into(), |n| n.to_string())
                )
            })
        })?;
        let mut expected = x.size();
        if self.spec.learn_sigma && expected.len() > 1 {
            expected[1] *= 2;
        }
        if output.size() != expected {
            bail!(
                "{}: {}.forward returned a tensor of shape {:?}; expected {:?} (the input's{})",
                self.forward_at,
                self.name,
                output.size(),
                expected,
                if self.spec.learn_sigma { ", with twice its channels for learn_sigma" } else { "" }
            );
        }
        Ok(output)
    }
}

impl super::Denoiser for PythonNet {
    /// A module with a dropout layer draws in training, so its step is not split into
    /// batch lanes. Dropout called as a function in `forward` (`F.dropout`) is not seen:
    /// such a module still trains correctly, but its draws then depend on the lanes.
    fn draws_in_training(&self) -> bool {
        self.has_dropout
    }

    fn try_forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Result<Tensor> {
        self.call_forward(x, t, y, train)
    }

    fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        match self.call_forward(x, t, y, train) {
            Ok(output) => output,
            // Sampling and metrics call `forward`, which has no error path (the built-in
            // networks cannot fail on checked shapes): a Python error ends the stage as a
            // failure the user can fix, with its message.
            Err(err) => {
                eprintln!("error: {err:#}");
                std::process::exit(difflow_core::job::WORKER_STAGE_FAILED);
            }
        }
    }
}

/// Runs the file as a module named after it, with its folder on `sys.path` (for its own imports).
fn load_module<'py>(py: Python<'py>, file: &Path, source: &str) -> PyResult<Bound<'py, PyModule>> {
    if let Some(folder) = file.parent() {
        let path = py.import("sys")?.getattr("path")?;
        let folder = folder.display().to_string();
        if !path.contains(&folder)? {
            path.call_method1("insert", (0, folder))?;
        }
    }
    let stem = file.file_stem().map_or("difflow_model".into(), |s| s.to_string_lossy().into_owned());
    let c =
        |s: String| CString::new(s).map_err(|_| pyo3::exceptions::PyValueError::new_err("a NUL byte in the source"));
    PyModule::from_code(py, &c(source.to_string())?, &c(file.display().to_string())?, &c(stem)?)
}

/// The config's `args` as Python keyword arguments (through `json.loads`).
fn json_kwargs<'py>(
    py: Python<'py>,
    args: &serde_json::Map<String, serde_json::Value>,
) -> PyResult<Bound<'py, PyDict>> {
    let text = serde_json::Value::Object(args.clone()).to_string();
    py.import("json")?.call_method1("loads", (text,))?.downcast_into::<PyDict>().map_err(Into::into)
}

/// Whether a submodule is one of torch's dropout layers with p > 0.
fn has_dropout(py: Python<'_>, module: &Bound<'_, PyAny>) -> PyResult<bool> {
    let dropout = py.import("torch.nn.modules.dropout")?.getattr("_DropoutNd")?;
    for sub in module.call_method0("modules")?.try_iter()? {
        let sub = sub?;
        if sub.is_instance(&dropout)? && sub.getattr("p")?.extract::<f64>()? > 0.0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds `module.METHOD()`'s (name, tensor) pairs to the store, under their dotted names.
fn register(root: &nn::Path, module: &Bound<'_, PyAny>, method: &str, trainable: bool) -> Result<()> {
    for item in module.call_method0(method)?.try_iter()? {
        let (name, value): (String, Bound<'_, PyAny>) = item?.extract()?;
        // SAFETY: `value` is a live Python object while the GIL is held.
        let tensor =
            unsafe { python_shim::unpack(value.as_ptr()) }?.with_context(|| format!("`{name}` is not a tensor"))?;
        let mut parts: Vec<&str> = name.split('.').collect();
        let leaf = parts.pop().unwrap_or_default();
        let path = parts.iter().fold(root.clone(), |path, part| path.sub(*part));
        let _registered = path.add(leaf, tensor, trainable);
    }
    Ok(())
}

/// A tch tensor as a Python `torch.Tensor` (the same TensorImpl).
fn wrap<'py>(py: Python<'py>, t: &Tensor) -> Result<Bound<'py, PyAny>> {
    let pointer = python_shim::wrap(t)?;
    // SAFETY: `wrap` returns a new reference (or fails above).
    Ok(unsafe { Bound::from_owned_ptr(py, pointer) })
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

/// `FILE:LINE: Type: message` for a Python exception: the innermost frame in the user's
/// file (else the innermost frame; a SyntaxError's own position), with the traceback below.
fn describe(py: Python<'_>, err: &PyErr, user_file: &str) -> String {
    let value = err.value(py);
    let kind = err.get_type(py).name().map_or("Exception".into(), |n| n.to_string());
    let message = value.str().map_or(String::new(), |s| s.to_string());
    let mut frames: Vec<(String, i64)> = Vec::new();
    if let Some(tb) = err.traceback(py) {
        if let Ok(summary) = py.import("traceback").and_then(|m| m.call_method1("extract_tb", (tb,))) {
            for frame in summary.try_iter().into_iter().flatten().flatten() {
                let file = frame.getattr("filename").and_then(|f| f.extract::<String>());
                let line = frame.getattr("lineno").and_then(|l| l.extract::<i64>());
                if let (Ok(file), Ok(line)) = (file, line) {
                    frames.push((file, line));
                }
            }
        }
    }
    let syntax = || -> Option<(String, i64)> {
        Some((value.getattr("filename").ok()?.extract().ok()?, value.getattr("lineno").ok()?.extract().ok()?))
    };
    let at = frames.iter().rev().find(|(f, _)| f == user_file).or(frames.last()).cloned().or_else(syntax);
    let head = match at {
        Some((file, line)) => format!("{file}:{line}: {kind}: {message}"),
        None => format!("{user_file}: {kind}: {message}"),
    };
    let trace = err.traceback(py).and_then(|tb| tb.format().ok()).unwrap_or_default();
    if trace.is_empty() {
        head
    } else {
        format!("{head}\n{}", trace.trim_end())
    }
}
