//! The gradient all-reduce of the MNIST UNet between two Gloo ranks on the loopback
//! (threads of this process, as the workers are processes): one flat buffer against one
//! all-reduce per parameter. Prints measured times and their ratio; `cargo run --release
//! -p difflow-engine --example allreduce_cost`.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use difflow_engine::data::DataMeta;
use difflow_engine::dist::ProcessGroup;
use difflow_engine::models::build_denoiser;
use serde_json::json;
use tch::{nn, Device, Tensor};

const REPEATS: usize = 30;

fn parameter_sizes() -> Vec<i64> {
    let vs = nn::VarStore::new(Device::Cpu);
    let meta: DataMeta =
        serde_json::from_value(json!({"type": "images", "shape": [1, 28, 28], "classes": 10, "count": 1})).unwrap();
    // The train stage's defaults fill the model config as the front end does.
    let train = difflow_core::schema::with_defaults(
        "train",
        "diffusion",
        &json!({"model": {"kind": "model", "variant": "unet", "channels": 32, "mults": [1, 2], "res_blocks": 1,
                          "attention": [], "dropout": 0.0, "classes": 10}}),
    );
    let model = train["model"].clone();
    let _net = build_denoiser(&vs.root(), &model, &meta).unwrap();
    vs.trainable_variables().iter().map(|t| t.numel() as i64).collect()
}

/// Seconds per all-reduce of the whole gradient: (flat, per parameter).
fn measure(group: &ProcessGroup, sizes: &[i64]) -> (f64, f64) {
    let total: i64 = sizes.iter().sum();
    let mut flat = Tensor::ones([total], (tch::Kind::Float, Device::Cpu));
    let mut parts: Vec<Tensor> = sizes.iter().map(|&n| Tensor::ones([n], (tch::Kind::Float, Device::Cpu))).collect();
    group.all_reduce_sum(&mut [&mut flat]).unwrap(); // warm-up
    group.barrier().unwrap();
    let start = Instant::now();
    for _ in 0..REPEATS {
        group.all_reduce_sum(&mut [&mut flat]).unwrap();
    }
    let flat_s = start.elapsed().as_secs_f64() / REPEATS as f64;
    group.barrier().unwrap();
    let start = Instant::now();
    for _ in 0..REPEATS {
        let mut refs: Vec<&mut Tensor> = parts.iter_mut().collect();
        group.all_reduce_sum(&mut refs).unwrap();
    }
    (flat_s, start.elapsed().as_secs_f64() / REPEATS as f64)
}

fn main() {
    tch::set_num_threads(1);
    let sizes = parameter_sizes();
    let total: i64 = sizes.iter().sum();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            let sizes = sizes.clone();
            std::thread::spawn(move || {
                let group = ProcessGroup::new("127.0.0.1", port, rank, 2, Duration::from_secs(30)).unwrap();
                measure(&group, &sizes)
            })
        })
        .collect();
    let (flat, per_parameter) = ranks.into_iter().map(|r| r.join().unwrap()).next().unwrap();
    println!("MNIST UNet: {} parameter tensors, {total} values ({:.1} MB fp32)", sizes.len(), total as f64 * 4e-6);
    println!("all-reduce per step, 2 Gloo ranks on the loopback:");
    println!("  one flat buffer:        {:8.3} ms", flat * 1e3);
    println!("  one per parameter:      {:8.3} ms", per_parameter * 1e3);
    println!("  per-parameter / flat:   {:8.2}x", per_parameter / flat);
}
