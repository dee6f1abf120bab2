//! The GPU kit's NCCL checks, part of `difflow-worker check` and on their own as
//! `difflow-worker check-nccl [--device cuda:N]`. The GPU machine has one GPU, and NCCL
//! refuses two ranks on one GPU ("Duplicate GPU detected"), so the group is a world of one:
//! rank 0 hosts the TCPStore on a free loopback port, forms the NCCL group on its GPU,
//! all-reduces a flat CUDA buffer (a sum over one rank: the input itself), broadcasts from
//! rank 0, passes a barrier and destroys the group. That drives the same shim, store and
//! collectives as a data-parallel CUDA stage, short of a second GPU.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use crate::dist::{nccl_built, nccl_shim_path, Backend, ProcessGroup};
use crate::kit_check::relative_error;

/// One check's result: compared (an error against a tolerance) or skipped, with why.
pub enum Outcome {
    Measured { error: f64, tolerance: f64, note: String },
    Skipped(String),
}

/// Floats in the all-reduced buffer: about the MNIST UNet's flat gradient (1.06M parameters).
const FLAT_LEN: i64 = 1 << 20;

/// `nccl_shim_loads` and `nccl_world1` for a run on `device`.
pub fn checks(device: Device) -> Vec<(&'static str, Outcome)> {
    vec![("nccl_shim_loads", shim_loads()), ("nccl_world1", world_of_one(device))]
}

/// Whether the NCCL shim is found (beside the worker in a kit) and loads with libtorch_cuda.
fn shim_loads() -> Outcome {
    if !nccl_built() {
        return Outcome::Skipped("skipped: this difflow-worker was built without NCCL (libtorch without CUDA)".into());
    }
    let (error, note) = match nccl_shim_path() {
        Ok(path) => (0.0, format!("loaded {}", path.display())),
        Err(err) => (f64::INFINITY, format!("{err:#}")),
    };
    Outcome::Measured { error, tolerance: 0.0, note }
}

/// The world-of-one NCCL group on `device`'s GPU; skipped on the CPU, saying why.
fn world_of_one(device: Device) -> Outcome {
    let Device::Cuda(index) = device else {
        let _ = crate::device::load_cuda();
        let why = match tch::Cuda::device_count() {
            0 => "skipped: no GPU present (NCCL runs on GPUs only)".to_string(),
            gpus => format!("skipped: the checks run on the CPU (--device cpu), though {gpus} GPU(s) are present"),
        };
        return Outcome::Skipped(why);
    };
    match collectives(index) {
        Ok((error, note)) => Outcome::Measured { error, tolerance: 0.0, note },
        Err(err) => Outcome::Measured { error: f64::INFINITY, tolerance: 0.0, note: format!("{err:#}") },
    }
}

/// Forms the group on cuda:`index`, runs the collectives and destroys it: the largest
/// relative error (0 when every result is exact) and what was done.
fn collectives(index: usize) -> Result<(f64, String)> {
    let port = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?.local_addr()?.port();
    let group = ProcessGroup::with_backend("127.0.0.1", port, 0, 1, Duration::from_secs(60), Backend::Nccl(index))?;
    let device = Device::Cuda(index);
    let input = Tensor::randn([FLAT_LEN], (Kind::Float, Device::Cpu));
    let mut flat = input.to_device(device);
    tch::Cuda::synchronize(index as i64);
    let started = Instant::now();
    group.all_reduce_sum(&mut [&mut flat])?;
    tch::Cuda::synchronize(index as i64);
    let all_reduce_ms = started.elapsed().as_secs_f64() * 1e3;
    let reduce_error = relative_error(&flat, &input);

    let root_values = Tensor::arange(16, (Kind::Int64, Device::Cpu)) * 7 - 3;
    let mut token = root_values.to_device(device);
    group.broadcast(&mut token, 0)?;
    let broadcast_error = relative_error(&token, &root_values);
    group.barrier()?;
    drop(group);
    if !(reduce_error.is_finite() && broadcast_error.is_finite()) {
        bail!("the collectives returned non-finite values");
    }
    let note = format!(
        "world of 1 on cuda:{index}, TCPStore 127.0.0.1:{port}: all-reduce of {FLAT_LEN} floats ({all_reduce_ms:.2} ms, the first call, which creates the communicator), broadcast, barrier, destroy"
    );
    Ok((reduce_error.max(broadcast_error), note))
}

/// `difflow-worker check-nccl [--device cuda:N]`: the NCCL checks alone, one JSON line
/// each; exit status 1 when one fails. The device is read here, not resolved, so that on
/// a machine without a GPU the lookup of the shim still runs before the missing GPU is
/// reported.
pub fn run(args: &[String]) -> Result<()> {
    let device = match args {
        [] => Device::Cuda(0),
        [flag, name] if flag == "--device" => match name.as_str() {
            "cpu" => Device::Cpu,
            "cuda" => Device::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(index)) => Device::Cuda(index),
                _ => bail!("unknown device `{name}`: use `cpu` or `cuda:N`"),
            },
        },
        _ => bail!("usage: difflow-worker check-nccl [--device cpu|cuda:N]"),
    };
    let mut failed = Vec::new();
    for (name, outcome) in checks(device) {
        if !crate::kit_check::print_outcome(name, &outcome) {
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("{} check(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}
