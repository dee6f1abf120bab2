//! A training stage killed after a checkpoint resumes from it and finishes with the same
//! number of steps, and (every step being seeded by (seed, step)) the same weights as an
//! uninterrupted run.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use tch::Tensor;

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");
const STEPS: usize = 400;

fn write_job(path: &Path, kind: &str, variant: &str, params: serde_json::Value, data: Option<&Path>, out: &Path) {
    let inputs = match data {
        Some(dir) => json!({"points": {"kind": "dataset", "variant": "toy", "params": {}, "dir": dir}}),
        None => json!({}),
    };
    let job = json!({
        "instance": kind, "kind": kind, "variant": variant, "inputs": inputs,
        "params": difflow_core::schema::with_defaults(kind, variant, &params),
        "out_dir": out, "device": "cpu", "settings": {"threads": 1}
    });
    std::fs::write(path, job.to_string()).unwrap();
}

fn run_to_end(job: &Path) {
    let status = Command::new(WORKER).arg(job).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "worker failed on {}", job.display());
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut named = Tensor::read_safetensors(path).unwrap();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

#[test]
fn a_killed_training_run_resumes_from_its_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = root.join("data");
    write_job(
        &root.join("data.json"),
        "dataset",
        "toy",
        json!({"shape": "moons", "count": 2000, "noise": 0.05}),
        None,
        &data,
    );
    run_to_end(&root.join("data.json"));

    let params = json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 64, "layers": 2},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "linear", "steps": 50},
        "steps": STEPS, "batch": 64, "lr": 1e-3, "warmup": 10, "ema": 0.99, "seed": 7, "checkpoint_every": 50
    });
    let (whole, killed) = (root.join("whole"), root.join("killed"));
    write_job(&root.join("whole.json"), "train", "diffusion", params.clone(), Some(&data), &whole);
    write_job(&root.join("killed.json"), "train", "diffusion", params, Some(&data), &killed);
    run_to_end(&root.join("whole.json"));

    // Kill the second run right after its third checkpoint (step 150): the worker's test
    // hook aborts it when it reports step 151, a point the test chooses, not a race.
    let status = Command::new(WORKER)
        .arg(root.join("killed.json"))
        .env("DIFFLOW_ABORT_AT", "151")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the aborted run reports failure");
    let state = killed.join("checkpoint/state.json");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let at = saved["step"].as_u64().unwrap() as usize;
    assert_eq!(at, 150, "the last checkpoint before the kill");
    assert!(!killed.join("ema.safetensors").exists(), "a killed run has no final outputs");

    // Rerun the same job: it resumes and finishes.
    let output = Command::new(WORKER).arg(root.join("killed.json")).output().unwrap();
    assert!(output.status.success());
    let events = String::from_utf8_lossy(&output.stdout);
    assert!(events.contains(&format!("resuming from the checkpoint at step {at}")), "events: {events}");
    let loss = std::fs::read_to_string(killed.join("loss.csv")).unwrap();
    let rows: Vec<&str> = loss.lines().skip(1).collect();
    assert_eq!(rows.len(), STEPS, "one loss row per step, none lost or repeated");
    for (i, row) in rows.iter().enumerate() {
        assert!(row.starts_with(&format!("{},", i + 1)), "row {i}: {row}");
    }
    assert!(!killed.join("checkpoint").exists(), "the finished run removes its checkpoint");

    for file in ["model.safetensors", "ema.safetensors"] {
        let (a, b) = (weights(&whole.join(file)), weights(&killed.join(file)));
        assert_eq!(a.len(), b.len());
        let mut worst = 0f64;
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            worst = worst.max((ta - tb).abs().max().double_value(&[]));
        }
        println!("{file}: resumed (killed at step {at}) vs uninterrupted, max |Δ| = {worst:e}");
        assert!(worst < 1e-6, "{file}: the resumed run differs from the uninterrupted one by {worst}");
    }
    assert_eq!(loss, std::fs::read_to_string(whole.join("loss.csv")).unwrap(), "identical loss logs");
}

/// With ema = 0 the EMA weights are the raw weights; with the warm-up, a long decay still
/// moves the EMA far from the initial weights in a short run.
#[test]
fn the_ema_tracks_the_weights_with_warm_up() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = root.join("data");
    write_job(&root.join("data.json"), "dataset", "toy", json!({"shape": "moons", "count": 500}), None, &data);
    run_to_end(&root.join("data.json"));
    let params = |ema: f64, steps: usize| {
        json!({
            "model": {"kind": "model", "variant": "mlp", "hidden": 32, "layers": 1},
            "data": {"$stage": "points"},
            "schedule": {"kind": "schedule", "variant": "linear", "steps": 25},
            "steps": steps, "batch": 32, "lr": 1e-2, "ema": ema, "seed": 3
        })
    };
    let max_diff = |a: &Path, b: &Path| {
        weights(a)
            .iter()
            .zip(weights(b))
            .map(|((_, x), (_, y))| (x - y).abs().max().double_value(&[]))
            .fold(0f64, f64::max)
    };
    for (name, ema, steps) in [("plain", 0.0, 30), ("warm", 0.9999, 60), ("start", 0.9999, 1)] {
        write_job(
            &root.join(format!("{name}.json")),
            "train",
            "diffusion",
            params(ema, steps),
            Some(&data),
            &root.join(name),
        );
        run_to_end(&root.join(format!("{name}.json")));
    }
    let (plain, warm, start) = (root.join("plain"), root.join("warm"), root.join("start"));
    assert_eq!(max_diff(&plain.join("ema.safetensors"), &plain.join("model.safetensors")), 0.0);
    // After 60 updates the warmed-up decay is (1+59)/(10+59) ≈ 0.87, so the EMA sits near the
    // trained weights: much closer to them than to the initial weights.
    let to_raw = max_diff(&warm.join("ema.safetensors"), &warm.join("model.safetensors"));
    let init_vs_raw = max_diff(&start.join("model.safetensors"), &warm.join("model.safetensors"));
    println!("EMA vs raw after 60 steps: {to_raw:.4}; raw after 1 vs 60 steps: {init_vs_raw:.4}");
    assert!(to_raw < 0.5 * init_vs_raw, "the EMA lags far behind the weights: {to_raw} vs {init_vs_raw}");
}

fn toy_data(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    write_job(&root.join("data.json"), "dataset", "toy", json!({"shape": "moons", "count": 256}), None, &data);
    run_to_end(&root.join("data.json"));
    data
}

/// The parameters of a small MLP trained on the toy points, with `settings` added.
fn small_mlp_training(settings: serde_json::Value) -> serde_json::Value {
    let mut params = json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 16, "layers": 1},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "linear", "steps": 25},
    });
    params.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    params
}

/// A garbage `checkpoint/state.json` (and a partial `checkpoint.tmp`, as a full disk
/// leaves it) must not block reruns: the worker says so, discards both and trains from
/// step 0, to the same weights as a clean run.
#[test]
fn a_garbage_checkpoint_is_discarded_and_training_starts_over() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = toy_data(root);
    let params = small_mlp_training(json!({"steps": 30, "batch": 32, "seed": 3, "checkpoint_every": 10}));
    let (clean, broken) = (root.join("clean"), root.join("broken"));
    write_job(&root.join("clean.json"), "train", "diffusion", params.clone(), Some(&data), &clean);
    write_job(&root.join("broken.json"), "train", "diffusion", params, Some(&data), &broken);
    run_to_end(&root.join("clean.json"));
    std::fs::create_dir_all(broken.join("checkpoint")).unwrap();
    std::fs::write(broken.join("checkpoint/state.json"), b"\x00garbage{{").unwrap();
    std::fs::create_dir_all(broken.join("checkpoint.tmp")).unwrap();
    std::fs::write(broken.join("checkpoint.tmp/model.safetensors"), vec![0u8; 1 << 20]).unwrap();

    let output = Command::new(WORKER).arg(root.join("broken.json")).output().unwrap();
    let events = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(events.contains("discarding the checkpoint") && events.contains("training from step 0"), "{events}");
    assert!(!broken.join("checkpoint.tmp").exists(), "the partial checkpoint still holds disk space");
    assert!(!broken.join("checkpoint").exists());
    for file in ["model.safetensors", "ema.safetensors"] {
        let (a, b) = (weights(&clean.join(file)), weights(&broken.join(file)));
        assert!(a.iter().zip(&b).all(|((na, ta), (nb, tb))| na == nb && ta.equal(tb)), "{file} differs");
    }
}

/// The divergence message suggests fp32 only when the run was not in fp32.
#[test]
fn divergence_in_fp32_does_not_suggest_fp32() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = toy_data(root);
    let params =
        small_mlp_training(json!({"steps": 50, "batch": 32, "lr": 1e30, "grad_clip": 0.0, "precision": "fp32"}));
    write_job(&root.join("train.json"), "train", "diffusion", params, Some(&data), &root.join("out"));
    let output = Command::new(WORKER).arg(root.join("train.json")).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("training diverged") && stderr.contains("lower `lr`"), "{stderr}");
    assert!(!stderr.contains("fp32"), "{stderr}");
}
