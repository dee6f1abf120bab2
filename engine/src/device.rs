//! The job's device string → a libtorch device.

use anyhow::{bail, Result};
use tch::Device;

/// The device the stage put its tensors on, as [`resolve`] (or a data-parallel rank's
/// placement, [`note_used`]) last chose it: what the entry records, never `auto`.
static USED: std::sync::Mutex<Option<Device>> = std::sync::Mutex::new(None);

/// Records `device` as the one the stage runs on.
pub fn note_used(device: Device) {
    *USED.lock().unwrap_or_else(|e| e.into_inner()) = Some(device);
}

/// The device the stage ran on (`cpu`, `cuda:0`); `cpu` when it chose none (stages that
/// only read and write files keep their tensors on the CPU).
pub fn used_name() -> String {
    match *USED.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(Device::Cuda(index)) => format!("cuda:{index}"),
        Some(Device::Cpu) | None => "cpu".to_string(),
        Some(other) => format!("{other:?}").to_lowercase(),
    }
}

/// `"auto"` (CUDA 0 when available, else CPU), `"cpu"`, `"cuda"` or `"cuda:N"`.
pub fn resolve(name: &str) -> Result<Device> {
    let device = resolve_name(name)?;
    note_used(device);
    Ok(device)
}

fn resolve_name(name: &str) -> Result<Device> {
    let name = name.trim();
    if name != "cpu" {
        let _ = load_cuda();
    }
    match name {
        "auto" | "" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => cuda(index),
            _ => bail!("unknown device `{name}`: use `auto`, `cpu` or `cuda:N`"),
        },
    }
}

/// Loads libtorch's CUDA backend once: the linker drops libtorch_cuda because nothing calls
/// into it directly, and without it libtorch sees no CUDA device. It is found like libtorch
/// (LD_LIBRARY_PATH, then the worker's rpath), and finds the CUDA libraries of a pip install
/// through its own rpath. Returns why it is not loaded.
pub fn load_cuda() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: libtorch_cuda's initialisers only register the CUDA backend with libtorch.
            let library = unsafe { libloading::Library::new("libtorch_cuda.so") }.map_err(|e| e.to_string())?;
            // Stays loaded for the life of the process (libtorch keeps pointers into it).
            std::mem::forget(library);
            Ok(())
        })
        .clone()
}

fn cuda(index: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        let why = load_cuda().err().map(|e| format!("; libtorch's CUDA backend did not load: {e}")).unwrap_or_default();
        bail!(
            "device cuda:{index} is not available ({count} CUDA device(s) visible to libtorch{why}); use `--device cpu` or another index"
        );
    }
    Ok(Device::Cuda(index))
}

extern "C" {
    // `void at::autocast::set_autocast_dtype(c10::DeviceType, c10::ScalarType)` in
    // libtorch_cpu; tch exposes autocast on/off but not its dtype (float16 by default).
    // Both enums are int8 (`enum class … : int8_t`).
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_autocast_set_dtype(device_type: i8, scalar_type: i8);
}

/// c10::DeviceType::CUDA.
const DEVICE_TYPE_CUDA: i8 = 1;
/// c10::ScalarType::BFloat16.
const SCALAR_TYPE_BFLOAT16: i8 = 15;

/// Makes CUDA autocast (`tch::autocast`) compute in bfloat16 instead of float16.
pub fn use_bf16_autocast() {
    // SAFETY: a plain setter of libtorch's thread-local autocast state, with valid enum values.
    unsafe { at_autocast_set_dtype(DEVICE_TYPE_CUDA, SCALAR_TYPE_BFLOAT16) }
}
