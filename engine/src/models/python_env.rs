//! The Python interpreter the worker embeds for networks written in Python: the one of the
//! environment whose torch provides the worker's libtorch (a venv, conda env or prefix
//! with `lib/pythonX.Y/site-packages/torch/lib`), so that `import torch` in Python loads the
//! very libtorch the worker already runs on. It is started once, on first use, with that
//! environment's `bin/python` as its executable (Python then finds the environment's
//! `pyvenv.cfg` and `site-packages` itself), and without Python's signal handlers (the
//! worker keeps its own for Ctrl-C and Slurm's warnings).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use pyo3::ffi;

/// Starts the interpreter unless it runs already; an error (no environment found, Python
/// failed to start) is the same on every call.
pub fn ensure_started() -> Result<()> {
    static STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STARTED.get_or_init(|| start().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn start() -> Result<()> {
    // SAFETY: reads the interpreter's global state; true when something else started it.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Ok(());
    }
    let libtorch = loaded_libtorch()?;
    let prefix = environment_prefix(&libtorch).with_context(|| {
        format!("the worker's libtorch ({}) is not inside a Python environment's site-packages", libtorch.display())
    })?;
    let executable = ["python3", "python"]
        .iter()
        .map(|name| prefix.join("bin").join(name))
        .find(|p| p.exists())
        .with_context(|| format!("no bin/python3 in the Python environment {}", prefix.display()))?;
    let executable = CString::new(executable.as_os_str().as_bytes()).context("the Python path holds a NUL byte")?;
    // SAFETY: the PyConfig calls of Python's documented embedding sequence, on this
    // thread, before any other Python call; the GIL is released at the end so that
    // `Python::with_gil` takes it from any thread.
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let set = ffi::PyConfig_SetBytesString(&mut config, &mut config.executable, executable.as_ptr());
        let status = if ffi::PyStatus_Exception(set) != 0 { set } else { ffi::Py_InitializeFromConfig(&config) };
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            let message = if status.err_msg.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(status.err_msg).to_string_lossy().into_owned()
            };
            bail!("Python ({}) failed to start: {message}", executable.to_string_lossy());
        }
        ffi::PyEval_SaveThread();
    }
    // torch's Python side must be set up before tensors cross (and it loads libtorch_python).
    pyo3::Python::with_gil(|py| py.import("torch").map(drop))
        .with_context(|| format!("the embedded Python ({}) cannot import torch", executable.to_string_lossy()))
}

/// The libtorch_cpu this process has loaded, from the dynamic loader's map.
fn loaded_libtorch() -> Result<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("cannot read /proc/self/maps")?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .map(PathBuf::from)
        .context("libtorch_cpu.so is not loaded in this process")
}

/// `<env>` of `<env>/lib/pythonX.Y/site-packages/torch/lib/libtorch_cpu.so` (or dist-packages).
pub fn environment_prefix(libtorch: &Path) -> Option<PathBuf> {
    let site = libtorch
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "site-packages" || name == "dist-packages"))?;
    let libdir = site.parent()?.parent()?;
    if !libdir.file_name()?.to_string_lossy().starts_with("lib") {
        return None;
    }
    libdir.parent().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_above_site_packages() {
        let lib = Path::new("/e/v/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so");
        assert_eq!(environment_prefix(lib), Some(PathBuf::from("/e/v")));
        assert_eq!(environment_prefix(Path::new("/opt/libtorch/lib/libtorch_cpu.so")), None);
    }
}
