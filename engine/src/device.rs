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
