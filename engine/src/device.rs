//! The job's device string → a libtorch device.

use anyhow::{bail, Result};
use tch::Device;

/// `"auto"` (CUDA 0 when available, else CPU), `"cpu"`, `"cuda"` or `"cuda:N"`.
pub fn resolve(name: &str) -> Result<Device> {
    let name = name.trim();
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

fn cuda(index: usize) -> Result<Device> {
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        bail!(
            "device cuda:{index} is not available ({count} CUDA device(s) visible to libtorch); use `--device cpu` or another index"
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
