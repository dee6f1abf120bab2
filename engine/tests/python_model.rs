//! Networks written in Python (`model … = python { … }`), driven by the engine: a train
//! stage trains one and its loss falls, and a sample stage draws from it; its weights file round-trips into a fresh module;
//! an exception in `__init__` or `forward` and an output of the wrong shape are errors
//! naming the line of the user's file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use difflow_engine::data::{DataMeta, DataType};
use difflow_engine::models::build_denoiser;
use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");

/// The tiny Python net the front end's checker tests name too (one copy for both).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("tests/check/python/toy_net.py")
}

fn model(class: &str) -> Value {
    json!({
        "kind": "model", "variant": "python", "file": fixture(), "class": class,
        "args": {"dim": 2, "hidden": 32}, "classes": 0, "learn_sigma": false, "prediction": "eps"
    })
}

fn run_job(root: &Path, name: &str, kind: &str, variant: &str, params: Value, data: Option<&Path>) -> Output {
    let inputs = match data {
        Some(dir) => json!({"points": {"kind": "dataset", "variant": "toy", "params": {}, "dir": dir}}),
        None => json!({}),
    };
    let job = json!({
        "instance": name, "kind": kind, "variant": variant, "inputs": inputs,
        "params": difflow_core::schema::with_defaults(kind, variant, &params),
        "out_dir": root.join(name), "device": "cpu", "settings": {"threads": 1}
    });
    let path = root.join(format!("{name}.json"));
    std::fs::write(&path, job.to_string()).unwrap();
    Command::new(WORKER).arg(&path).output().unwrap()
}

/// A toy dataset (moons) in `root/data`.
fn toy_data(root: &Path) -> PathBuf {
    let out = run_job(root, "data", "dataset", "toy", json!({"shape": "moons", "count": 1000, "noise": 0.05}), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    root.join("data")
}

fn train(root: &Path, name: &str, class: &str, steps: usize) -> Output {
    let data = toy_data(root);
    let params = json!({
        "model": model(class), "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "linear", "steps": 50},
        "steps": steps, "batch": 128, "lr": 3e-3, "warmup": 0, "ema": 0.9, "seed": 3
    });
    run_job(root, name, "train", "diffusion", params, Some(&data))
}

fn points() -> DataMeta {
    DataMeta { data_type: DataType::Points, shape: vec![2], classes: 0, count: 1000, flip: false }
}

#[test]
fn a_python_net_trains_and_its_loss_falls() {
    let root = tempfile::tempdir().unwrap();
    let out = train(root.path(), "train", "ToyNet", 300);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(root.path().join("train/loss.csv")).unwrap();
    let losses: Vec<f64> = csv.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(losses.len(), 300);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..30]), mean(&losses[270..]));
    assert!(last < 0.8 * first, "the loss did not fall: {first} over the first 30 steps, {last} over the last 30");
    // The weights file is the module's state_dict: its names, parameters and buffers.
    let names: Vec<String> = Tensor::read_safetensors(root.path().join("train/model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|n| n.0)
        .collect();
    for name in ["inp.weight", "body.1.weight", "body.3.bias", "time.weight", "scale"] {
        assert!(names.iter().any(|n| n == name), "{name} is missing from {names:?}");
    }
    // The sample stage rebuilds the module from the train stage's record and its EMA weights.
    let sampler = json!({"kind": "sampler", "variant": "ddim", "steps": 20, "eta": 0.0});
    let params = json!({"from": {"$stage": "fit"}, "sampler": sampler, "count": 200, "seed": 1, "batch": 100});
    let job = json!({
        "instance": "sample", "kind": "sample", "variant": "default",
        "inputs": {"fit": {"kind": "train", "variant": "diffusion", "params": {}, "dir": root.path().join("train")}},
        "params": difflow_core::schema::with_defaults("sample", "default", &params),
        "out_dir": root.path().join("sample"), "device": "cpu", "settings": {"threads": 1}
    });
    std::fs::write(root.path().join("sample.json"), job.to_string()).unwrap();
    let out = Command::new(WORKER).arg(root.path().join("sample.json")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let samples = difflow_engine::data::Dataset::read(&root.path().join("sample")).unwrap().values;
    assert_eq!(samples.size(), [200, 2]);
    // The moons lie within [-1.5, 2.5] x [-1, 1.5]; the drawn points near them, all finite.
    let largest = samples.abs().max().double_value(&[]);
    assert!(largest.is_finite() && largest < 4.0, "a sample lies at |x| = {largest}");
}

#[test]
fn weights_round_trip_into_a_fresh_module() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("weights.safetensors");
    let x = Tensor::randn([5, 2], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[0i64, 3, 10, 20, 49]);
    let first = nn::VarStore::new(Device::Cpu);
    let net = build_denoiser(&first.root(), &model("ToyNet"), &points()).unwrap();
    tch::no_grad(|| {
        for (_, mut v) in first.variables() {
            v.copy_(&(v.randn_like() * 0.5));
        }
    });
    let expected = tch::no_grad(|| net.forward(&x, &t, None, false));
    first.save(&file).unwrap();

    let mut second = nn::VarStore::new(Device::Cpu);
    let fresh = build_denoiser(&second.root(), &model("ToyNet"), &points()).unwrap();
    let before = tch::no_grad(|| fresh.forward(&x, &t, None, false));
    assert!(!before.allclose(&expected, 1e-5, 1e-6, false), "a fresh module already computes the same outputs");
    second.load(&file).unwrap();
    let after = tch::no_grad(|| fresh.forward(&x, &t, None, false));
    assert!(after.allclose(&expected, 1e-6, 1e-7, false), "the loaded module computes other outputs");
    assert_eq!(second.variables().len(), 9, "{:?}", second.variables().keys());
}

#[test]
fn an_exception_in_init_names_its_line() {
    let vars = nn::VarStore::new(Device::Cpu);
    let mut config = model("BadInit");
    config["args"] = json!({"width": 7});
    let err = build_denoiser(&vars.root(), &config, &points()).err().expect("BadInit cannot be built");
    let text = format!("{err:#}");
    let at = format!("{}:45: RuntimeError: width 7 is not supported", fixture().display());
    assert!(text.starts_with(&at), "{text}");
}

#[test]
fn a_missing_class_is_named() {
    let vars = nn::VarStore::new(Device::Cpu);
    let err = build_denoiser(&vars.root(), &model("Nope"), &points()).err().expect("there is no class Nope");
    assert!(format!("{err:#}").contains("has no class `Nope`"), "{err:#}");
}

#[test]
fn an_exception_in_forward_fails_the_stage_with_its_line() {
    let root = tempfile::tempdir().unwrap();
    let out = train(root.path(), "train", "Raises", 5);
    assert_eq!(out.status.code(), Some(difflow_core::job::WORKER_STAGE_FAILED), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("error: {}:38: ValueError: no forward today", fixture().display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(stderr.contains("Raises.forward"), "{stderr}");
}

#[test]
fn a_wrong_output_shape_fails_the_stage_with_the_forward_line() {
    let root = tempfile::tempdir().unwrap();
    let out = train(root.path(), "train", "WrongShape", 5);
    assert_eq!(out.status.code(), Some(difflow_core::job::WORKER_STAGE_FAILED), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("error: {}:32: ", fixture().display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(stderr.contains("returned a tensor of shape [128, 1]; expected [128, 2]"), "{stderr}");
}

#[test]
fn only_a_module_with_dropout_keeps_its_step_in_one_lane() {
    let vars = nn::VarStore::new(Device::Cpu);
    let plain = build_denoiser(&vars.root(), &model("ToyNet"), &points()).unwrap();
    assert!(!plain.draws_in_training());
    let vars = nn::VarStore::new(Device::Cpu);
    let dropout = build_denoiser(&vars.root(), &model("WithDropout"), &points()).unwrap();
    assert!(dropout.draws_in_training());
}
