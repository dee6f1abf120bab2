//! What the live TensorBoard log costs a training step: the train stage's step time with the
//! log on and off (`DIFFLOW_TRAIN_LOG=0`), for the toy MLP (about a millisecond a step: the
//! worst case) and a 16 × 16 UNet, on the CPU, in process. Without `grad_clip`, so that the
//! gradient norm the log asks for is an extra reduction. A step's time is
//! (T(long run) − T(short run)) / (difference in steps), so start-up cancels out; the
//! variants are interleaved and the medians over the rounds are printed.
//!   cargo run --release -p difflow-engine --example train_log_overhead [ROUNDS]

use std::path::{Path, PathBuf};
use std::time::Instant;

use difflow_core::job::{Input, Job, JobSettings};
use difflow_engine::tblog::{TrainLog, DISABLE_ENV};
use serde_json::{json, Value};

fn job(instance: &str, (kind, variant): (&str, &str), params: &Value, inputs: &[(&str, &Path)], out: &Path) -> Job {
    let inputs = inputs.iter().map(|(name, dir)| {
        let input = Input { kind: "dataset".into(), variant: String::new(), params: json!({}), dir: dir.to_path_buf() };
        (name.to_string(), input)
    });
    Job {
        instance: instance.into(),
        kind: kind.into(),
        variant: variant.into(),
        params: difflow_core::schema::with_defaults(kind, variant, params),
        inputs: inputs.collect(),
        out_dir: out.to_path_buf(),
        device: "cpu".into(),
        settings: JobSettings::default(),
    }
}

/// Seconds to train `steps` steps of `params` on `data` into a fresh folder of `work`.
fn train_seconds(work: &Path, params: &Value, data: &Path, steps: usize, log: bool) -> f64 {
    let out = work.join("run");
    let _ = std::fs::remove_dir_all(&out);
    let mut params = params.clone();
    params["steps"] = json!(steps);
    std::env::set_var(DISABLE_ENV, if log { "1" } else { "0" });
    let job = job("fit", ("train", "diffusion"), &params, &[("data", data)], &out);
    let started = Instant::now();
    difflow_engine::stages::run(&job).expect("training runs");
    started.elapsed().as_secs_f64()
}

/// The log's own cost per step (encoding, framing, CRCs, buffered writes and flushes),
/// without the training around it.
fn log_record_cost(work: &Path) {
    const RECORDS: usize = 200_000;
    std::env::remove_var(DISABLE_ENV);
    let mut log = TrainLog::open(&work.join("record-cost"), true, &[]);
    assert!(log.is_active());
    let started = Instant::now();
    for step in 1..=RECORDS {
        log.record(step, 1.0 / step as f64, 1e-3, Some(0.5));
    }
    log.finish();
    let us = started.elapsed().as_secs_f64() * 1e6 / RECORDS as f64;
    eprintln!("BENCH TrainLog::record: {us:.2} µs per step ({RECORDS} steps, 4 scalars each)");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Case {
    name: &'static str,
    params: Value,
    data: PathBuf,
    steps: (usize, usize),
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let points = work.join("points");
    let toy = json!({"shape": "gaussians8", "count": 1024, "noise": 0.1, "seed": 0});
    difflow_engine::stages::run(&job("points", ("dataset", "toy"), &toy, &[], &points)).unwrap();
    let digits = work.join("digits");
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let mnist_params = json!({"path": mnist, "split": "train", "size": 16, "limit": 512});
    difflow_engine::stages::run(&job("digits", ("dataset", "mnist"), &mnist_params, &[], &digits)).unwrap();
    let schedule = json!({"kind": "schedule", "variant": "cosine", "steps": 100});
    let cases = [
        Case {
            name: "toy MLP (hidden 128, 3 layers, batch 256)",
            params: json!({"model": {"kind": "model", "variant": "mlp", "hidden": 128, "layers": 3},
                "data": {"$stage": "data"}, "schedule": schedule, "batch": 256, "lr": 1e-3, "seed": 0}),
            data: points,
            steps: (200, 1200),
        },
        Case {
            name: "UNet 16x16 (channels 16, mults [1, 2], batch 16)",
            params: json!({"model": {"kind": "model", "variant": "unet", "channels": 16, "mults": [1, 2],
                    "res_blocks": 1, "attention": [], "dropout": 0.0},
                "data": {"$stage": "data"}, "schedule": schedule, "batch": 16, "lr": 2e-4, "seed": 0}),
            data: digits,
            steps: (5, 25),
        },
    ];
    log_record_cost(work);
    for case in &cases {
        let (short, long) = case.steps;
        let mut step_ms = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, log) in [false, true].into_iter().enumerate() {
                let t_short = train_seconds(work, &case.params, &case.data, short, log);
                let t_long = train_seconds(work, &case.params, &case.data, long, log);
                step_ms[i].push((t_long - t_short) * 1e3 / (long - short) as f64);
            }
        }
        let [off, on] = step_ms.map(median);
        eprintln!(
            "BENCH {}: step {off:.3} ms without the log, {on:.3} ms with it: ratio {:.4} (median of {rounds} rounds)",
            case.name,
            on / off
        );
    }
    std::env::remove_var(DISABLE_ENV);
}
