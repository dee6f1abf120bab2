//! Tensors across the embedded Python through `libdifflow_python.so` (csrc/python_shim.cpp),
//! loaded on first use: a tch tensor as a Python `torch.Tensor` and back, one TensorImpl
//! on both sides. Found like the NCCL shim: beside the worker, in `lib/` beside it or beside
//! its folder (`pip install .` puts it in `<env>/lib`), then where build.rs made it.

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use pyo3::ffi::PyObject;
use tch::Tensor;

/// The shim's file name, wherever it lies.
pub const PYTHON_SHIM_FILE: &str = "libdifflow_python.so";
const BUILT_AT: &str = env!("DIFFLOW_PYTHON_SHIM");

type Wrap = unsafe extern "C" fn(*const c_void, *mut *mut c_char) -> *mut PyObject;
type Unpack = unsafe extern "C" fn(*mut PyObject, *mut *mut c_char) -> *mut c_void;
type FreeError = unsafe extern "C" fn(*mut c_char);

struct Shim {
    wrap: Wrap,
    unpack: Unpack,
    free_error: FreeError,
}

fn shim() -> Result<&'static Shim> {
    static SHIM: OnceLock<std::result::Result<Shim, String>> = OnceLock::new();
    SHIM.get_or_init(|| load().map_err(|e| format!("{e:#}"))).as_ref().map_err(|e| anyhow!("{e}"))
}

fn candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        candidates.push(dir.join(PYTHON_SHIM_FILE));
        candidates.push(dir.join("lib").join(PYTHON_SHIM_FILE));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("lib").join(PYTHON_SHIM_FILE));
        }
    }
    candidates.push(PathBuf::from(BUILT_AT));
    candidates
}

fn load() -> Result<Shim> {
    let mut tried = Vec::new();
    for path in candidates() {
        if !path.is_file() {
            tried.push(format!("{} (not found)", path.display()));
            continue;
        }
        // SAFETY: the shim has no initialisers of its own; its symbols are C functions of
        // the signatures above (csrc/python_shim.cpp).
        let loaded = unsafe {
            libloading::Library::new(&path).and_then(|library| {
                let shim = Shim {
                    wrap: *library.get::<Wrap>(b"dfl_python_wrap\0")?,
                    unpack: *library.get::<Unpack>(b"dfl_python_unpack\0")?,
                    free_error: *library.get::<FreeError>(b"dfl_python_free_error\0")?,
                };
                // Kept for the process's life: the functions point into it.
                std::mem::forget(library);
                Ok(shim)
            })
        };
        match loaded {
            Ok(shim) => return Ok(shim),
            Err(e) => tried.push(format!("{} ({e})", path.display())),
        }
    }
    bail!("cannot load {PYTHON_SHIM_FILE}, which `python` models need; tried {}", tried.join(", "))
}

fn take_error(shim: &Shim, error: *mut c_char) -> anyhow::Error {
    if error.is_null() {
        return anyhow!("the Python tensor bridge failed without a message");
    }
    // SAFETY: a NUL-terminated string the shim allocated; freed by the shim once copied.
    let text = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { (shim.free_error)(error) };
    anyhow!(text)
}

/// A new reference to `t` as a Python `torch.Tensor`. The GIL must be held.
pub fn wrap(t: &Tensor) -> Result<*mut PyObject> {
    let shim = shim()?;
    let mut error = std::ptr::null_mut();
    // SAFETY: `t.as_ptr()` is a live at::Tensor; the caller holds the GIL.
    let object = unsafe { (shim.wrap)(t.as_ptr().cast(), &mut error) };
    if object.is_null() {
        return Err(take_error(shim, error));
    }
    Ok(object)
}

/// The tensor a Python object holds (None when it is not a `torch.Tensor`).
///
/// # Safety
/// The GIL must be held and `object` be a live Python object.
pub unsafe fn unpack(object: *mut PyObject) -> Result<Option<Tensor>> {
    let shim = shim()?;
    let mut error = std::ptr::null_mut();
    let tensor = (shim.unpack)(object, &mut error);
    if tensor.is_null() {
        return if error.is_null() { Ok(None) } else { Err(take_error(shim, error)) };
    }
    // SAFETY: a heap at::Tensor the shim made for us to own, as tch's own constructors do.
    Ok(Some(Tensor::from_ptr(tensor.cast())))
}
