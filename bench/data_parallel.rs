//! Data parallelism on this machine, for the UNet of pipelines/mnist_quick.diff (unet_small:
//! 32 channels, mults [1, 2, 2]; 16 × 16 digits, batch 32):
//!   1. the gradient all-reduce between two Gloo ranks on the loopback (threads of this
//!      process): one flat buffer against one all-reduce per parameter;
//!   2. the train stage's step time with 2 processes × 1 thread against 1 process × 2
//!      threads, same global batch, run by the real worker. A step's time is
//!      (T(long run) − T(short run)) / (difference in steps), so start-up cancels out.
//!
//! The machine may be shared: the variants are interleaved, each round measures all of
//! them, the medians over the rounds are reported, and the load average is printed beside.
//!   cargo build --release -p difflow-engine --bin difflow-worker
//!   cargo run --release -p difflow-engine --example data_parallel [ROUNDS]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use difflow_core::job::{Input, Job, JobSettings};
use difflow_engine::data::DataMeta;
use difflow_engine::dist::ProcessGroup;
use difflow_engine::models::build_denoiser;
use serde_json::{json, Value};
use tch::{nn, Device, Tensor};

/// All-reduces per variant and round.
const REPEATS: usize = 10;
/// The short and the long training run whose difference gives the step time.
const STEPS: (usize, usize) = (5, 25);

fn unet() -> Value {
    json!({"kind": "model", "variant": "unet", "channels": 32, "mults": [1, 2, 2], "res_blocks": 1,
           "attention": [], "dropout": 0.0, "classes": 10})
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or("?".into(), |t| t.split_whitespace().next().unwrap_or("?").into())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn parameter_sizes() -> Vec<i64> {
    let vs = nn::VarStore::new(Device::Cpu);
    let meta: DataMeta =
        serde_json::from_value(json!({"type": "images", "shape": [1, 16, 16], "classes": 10, "count": 1})).unwrap();
    // The train stage's defaults fill the model config as the front end does.
    let train = difflow_core::schema::with_defaults("train", "diffusion", &json!({"model": unet()}));
    let _net = build_denoiser(&vs.root(), &train["model"], &meta).unwrap();
    vs.trainable_variables().iter().map(|t| t.numel() as i64).collect()
}

/// Seconds per all-reduce of the whole gradient, (flat, per parameter), one round each.
fn all_reduce_round(group: &ProcessGroup, flat: &mut Tensor, parts: &mut [Tensor]) -> (f64, f64) {
    group.barrier().unwrap();
    let start = Instant::now();
    for _ in 0..REPEATS {
        group.all_reduce_sum(&mut [&mut *flat]).unwrap();
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

fn all_reduce_cost(rounds: usize) {
    tch::set_num_threads(1);
    let sizes = parameter_sizes();
    let total: i64 = sizes.iter().sum();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            let sizes = sizes.clone();
            std::thread::spawn(move || {
                let group = ProcessGroup::new("127.0.0.1", port, rank, 2, Duration::from_secs(60)).unwrap();
                let mut flat = Tensor::ones([total], (tch::Kind::Float, Device::Cpu));
                let mut parts: Vec<Tensor> =
                    sizes.iter().map(|&n| Tensor::ones([n], (tch::Kind::Float, Device::Cpu))).collect();
                group.all_reduce_sum(&mut [&mut flat]).unwrap(); // warm-up
                (0..rounds)
                    .map(|_| {
                        let load = load_average();
                        let (f, p) = all_reduce_round(&group, &mut flat, &mut parts);
                        (f, p, load)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let rounds_of_rank0 = ranks.into_iter().map(|r| r.join().unwrap()).next().unwrap();
    println!(
        "MNIST UNet (unet_small): {} parameter tensors, {total} values ({:.1} MB fp32)",
        sizes.len(),
        total as f64 * 4e-6
    );
    println!("all-reduce of one step's gradient, 2 Gloo ranks on the loopback ({REPEATS} per variant and round):");
    for (n, (f, p, load)) in rounds_of_rank0.iter().enumerate() {
        println!("  round {}: flat {:7.2} ms, per parameter {:7.2} ms (load average {load})", n + 1, f * 1e3, p * 1e3);
    }
    let mut flat: Vec<f64> = rounds_of_rank0.iter().map(|r| r.0).collect();
    let mut per: Vec<f64> = rounds_of_rank0.iter().map(|r| r.1).collect();
    let (flat, per) = (median(&mut flat), median(&mut per));
    println!(
        "  median: flat {:.2} ms, per parameter {:.2} ms: per-parameter / flat = {:.1}x",
        flat * 1e3,
        per * 1e3,
        per / flat
    );
}

fn write_job(
    work: &Path,
    name: &str,
    kind: &str,
    variant: &str,
    params: Value,
    inputs: &[(&str, Input)],
    threads: usize,
) -> PathBuf {
    let job = Job {
        instance: name.into(),
        kind: kind.into(),
        variant: variant.into(),
        params: difflow_core::schema::with_defaults(kind, variant, &params),
        inputs: inputs.iter().map(|(n, i)| (n.to_string(), i.clone())).collect::<BTreeMap<_, _>>(),
        out_dir: work.join(name),
        device: "cpu".into(),
        settings: JobSettings { inception_weights: None, threads, limits: Default::default() },
    };
    let file = work.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_string(&job).unwrap()).unwrap();
    file
}

/// Runs `job` on `world` worker processes; returns the wall time.
fn run_worker(worker: &Path, job: &Path, world: usize, threads: usize) -> f64 {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            let mut command = Command::new(worker);
            command.arg(job).env("OMP_NUM_THREADS", threads.to_string()).stdout(Stdio::null());
            if world > 1 {
                command
                    .env("DIFFLOW_RANK", rank.to_string())
                    .env("DIFFLOW_WORLD_SIZE", world.to_string())
                    .env("DIFFLOW_STORE", format!("127.0.0.1:{port}"));
            }
            command.spawn().unwrap()
        })
        .collect();
    for child in children {
        assert!(child.wait_with_output().unwrap().status.success(), "the worker failed on {}", job.display());
    }
    started.elapsed().as_secs_f64()
}

fn step_time(rounds: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let exe = std::env::current_exe().unwrap();
    let worker = exe.parent().and_then(Path::parent).unwrap().join("difflow-worker");
    assert!(
        worker.is_file(),
        "{} is missing: cargo build --release -p difflow-engine --bin difflow-worker",
        worker.display()
    );
    let mnist = root.join("data/mnist");
    assert!(mnist.join("train-images-idx3-ubyte.gz").exists(), "{} is missing: run scripts/setup.sh", mnist.display());
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let digits =
        write_job(work, "digits", "dataset", "mnist", json!({"path": mnist, "split": "train", "size": 16}), &[], 1);
    run_worker(&worker, &digits, 1, 1);
    let data = Input { kind: "dataset".into(), variant: "mnist".into(), params: json!({}), dir: work.join("digits") };
    // (label, processes, threads per process)
    let variants = [("1 process x 2 threads", 1, 2), ("2 processes x 1 thread", 2, 1)];
    let mut per_step: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    println!(
        "train step (mnist_quick's UNet, batch 32; (T({}) - T({})) / {} steps per variant and round):",
        STEPS.1,
        STEPS.0,
        STEPS.1 - STEPS.0
    );
    for round in 0..rounds {
        let mut line = format!("  round {}:", round + 1);
        for (v, &(label, world, threads)) in variants.iter().enumerate() {
            let mut seconds = [0.0; 2];
            for (k, steps) in [STEPS.0, STEPS.1].into_iter().enumerate() {
                let name = format!("r{round}v{v}s{steps}");
                let params = json!({
                    "model": unet(), "data": {"$stage": "digits"},
                    "schedule": {"kind": "schedule", "variant": "cosine", "steps": 1000},
                    "uncond_p": 0.1, "steps": steps, "batch": 32, "lr": 1e-3, "seed": 1
                });
                let job = write_job(work, &name, "train", "diffusion", params, &[("digits", data.clone())], threads);
                seconds[k] = run_worker(&worker, &job, world, threads);
            }
            let step = (seconds[1] - seconds[0]) / (STEPS.1 - STEPS.0) as f64;
            per_step[v].push(step);
            line += &format!(" {label} {:6.1} ms/step;", step * 1e3);
        }
        println!("{line} load average {}", load_average());
    }
    let medians: Vec<f64> = per_step.iter_mut().map(|s| median(s)).collect();
    for ((label, _, _), m) in variants.iter().zip(&medians) {
        println!("  median {label}: {:.1} ms/step", m * 1e3);
    }
    println!("  step time (2 x 1) / (1 x 2) = {:.2} (below 1: two processes are faster)", medians[1] / medians[0]);
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(5, |a| a.parse().expect("ROUNDS is a count"));
    println!("load average at the start: {}", load_average());
    all_reduce_cost(rounds);
    step_time(rounds);
}
