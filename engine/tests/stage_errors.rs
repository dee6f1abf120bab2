//! Failures the user can fix end the worker with exit status 2 and a message that says what
//! to do; nothing is left that looks like finished outputs.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");

fn run(dir: &Path, name: &str, kind: &str, variant: &str, params: Value, inputs: Value) -> (i32, String) {
    let job = json!({
        "instance": name, "kind": kind, "variant": variant, "inputs": inputs,
        // Filled with the schema's defaults, as the front end fills them.
        "params": difflow_core::schema::with_defaults(kind, variant, &params),
        "out_dir": dir.join(name), "device": "cpu", "settings": {"threads": 1}
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, job.to_string()).unwrap();
    let out = Command::new(WORKER).arg(&path).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn toy(dir: &Path) -> Value {
    let (code, err) = run(dir, "points", "dataset", "toy", json!({"shape": "swissroll", "count": 500}), json!({}));
    assert_eq!(code, 0, "{err}");
    json!({"points": {"kind": "dataset", "variant": "toy", "params": {}, "dir": dir.join("points")}})
}

fn train_params(lr: f64) -> Value {
    json!({
        "model": {"kind": "model", "variant": "mlp", "hidden": 32, "layers": 1},
        "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "linear", "steps": 25},
        "steps": 200, "batch": 32, "lr": lr, "grad_clip": 0.0, "ema": 0.9
    })
}

#[test]
fn a_diverging_run_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = toy(dir.path());
    let (code, err) = run(dir.path(), "fit", "train", "diffusion", train_params(1e30), inputs);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("training diverged") && err.contains("lower `lr`"), "{err}");
    assert!(!dir.path().join("fit/ema.safetensors").exists());
}

#[test]
fn wrong_or_missing_parameters_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = toy(dir.path());
    let mut params = train_params(1e-3);
    params.as_object_mut().unwrap().remove("model");
    let (code, err) = run(dir.path(), "no_model", "train", "diffusion", params, inputs.clone());
    assert_eq!(code, 2);
    assert!(err.contains("`no_model`: missing field `model`"), "{err}");

    let mut params = train_params(1e-3);
    params["batch"] = json!("large");
    let (code, err) = run(dir.path(), "bad_batch", "train", "diffusion", params, inputs.clone());
    assert_eq!(code, 2);
    assert!(err.contains("`bad_batch`: invalid type: string \"large\", expected usize"), "{err}");

    let mut params = train_params(1e-3);
    params["model"]["variant"] = json!("unet");
    let (code, err) = run(dir.path(), "unet_on_points", "train", "diffusion", params, inputs);
    assert_eq!(code, 2);
    assert!(err.to_lowercase().contains("vector") || err.contains("points") || err.contains("image"), "{err}");
}

#[test]
fn an_unknown_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = toy(dir.path());
    let job = json!({
        "instance": "fit", "kind": "train", "variant": "diffusion", "inputs": inputs,
        "params": difflow_core::schema::with_defaults("train", "diffusion", &train_params(1e-3)),
        "out_dir": dir.path().join("fit"), "device": "tpu:0", "settings": {"threads": 1}
    });
    let path = dir.path().join("fit.json");
    std::fs::write(&path, job.to_string()).unwrap();
    let out = Command::new(WORKER).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device `tpu:0`"));
}
