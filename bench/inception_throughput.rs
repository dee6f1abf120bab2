//! Inception feature throughput of difflow (pool3 + bias-free logits of uint8 images, the
//! metrics' hot loop), images per second. Run through `bench/inception_throughput.sh`,
//! which also times the same network in PyTorch and prints the ratio; alone:
//!
//!     cargo run --release -p difflow-engine --example inception_throughput -- \
//!         WEIGHTS.pth [--images N] [--batch B] [--threads T] [--size S] [--device cpu|cuda] [--bf16]

use std::time::Instant;

use anyhow::{bail, Context, Result};
use difflow_engine::metrics::inception::{InceptionV3, Precision};
use tch::{Device, Kind, Tensor};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(weights) = args.first() else {
        bail!("usage: inception_throughput WEIGHTS [--images N] [--batch B] [--threads T] [--size S] [--device D] [--bf16]");
    };
    let flag = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args.get(i + 1).context("flag without a value")?.parse().context("not a number"),
            None => Ok(default),
        }
    };
    let (images, batch, threads, size) =
        (flag("--images", 64)?, flag("--batch", 32)?, flag("--threads", 0)?, flag("--size", 32)?);
    let device = match args.iter().position(|a| a == "--device").and_then(|i| args.get(i + 1)).map(String::as_str) {
        Some("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let precision = if args.iter().any(|a| a == "--bf16") { Precision::Bf16 } else { Precision::F32 };
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    let net = InceptionV3::load(std::path::Path::new(weights), device, precision)?;
    tch::manual_seed(0);
    let data = Tensor::randint(256, [images as i64, 3, size as i64, size as i64], (Kind::Uint8, Device::Cpu));
    // Warm-up: first-call allocations and kernel selection.
    net.extract(&data.narrow(0, 0, batch.min(images) as i64), batch, |_| {})?;
    let start = Instant::now();
    let out = net.extract(&data, batch, |_| {})?;
    let _ = out.pool3.sum(Kind::Float).double_value(&[]);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"impl\": \"difflow\", \"images\": {images}, \"batch\": {batch}, \"threads\": {}, \"seconds\": {secs:.3}, \"images_per_s\": {:.3}}}",
        tch::get_num_threads(),
        images as f64 / secs
    );
    Ok(())
}
