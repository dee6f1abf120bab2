//! A network written in Python goes wherever the built-in ones go: a training run killed
//! after a checkpoint resumes to the very weights of an uninterrupted run; two data-parallel
//! ranks train the weights one process trains (to 1e-5, the summation order); every sampler
//! family, classifier-free guidance and the NLL bound draw from it; a stage reading a train
//! entry made in another folder builds the net from its own pipeline's module file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::ranks::{relative_difference, run_ranks, weights};
use serde_json::{json, Value};

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("tests/check/python/toy_net.py")
}

/// The fixture's `ToyNet` on 2-D points, conditional on `classes` labels when > 0.
fn toy_net(classes: usize) -> Value {
    json!({
        "kind": "model", "variant": "python", "file": fixture(), "class": "ToyNet",
        "args": {"dim": 2, "hidden": 32, "classes": classes}, "classes": classes,
        "learn_sigma": false, "prediction": "eps"
    })
}

/// Writes the job of stage `name` into `root/NAME.json` (output folder `root/NAME`).
/// `inputs` are (name, kind, folder) of upstream entries.
fn write_job(
    root: &Path,
    name: &str,
    (kind, variant): (&str, &str),
    params: Value,
    inputs: &[(&str, &str, &Path)],
) -> PathBuf {
    let inputs: serde_json::Map<String, Value> = inputs
        .iter()
        .map(|(n, k, dir)| (n.to_string(), json!({"kind": k, "variant": "x", "params": {}, "dir": dir})))
        .collect();
    let job = json!({
        "instance": name, "kind": kind, "variant": variant, "inputs": inputs,
        "params": difflow_core::schema::with_defaults(kind, variant, &params),
        "out_dir": root.join(name), "device": "cpu", "settings": {"threads": 1}
    });
    let path = root.join(format!("{name}.json"));
    std::fs::write(&path, job.to_string()).unwrap();
    path
}

fn succeed(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn run_job(job: &Path) -> Output {
    succeed(Command::new(WORKER).arg(job).output().unwrap(), &job.display().to_string())
}

/// A toy dataset stage (`shape`: moons has 2 classes, gaussians8 has 8) in `root/data`.
fn toy_data(root: &Path, shape: &str) -> PathBuf {
    run_job(&write_job(root, "data", ("dataset", "toy"), json!({"shape": shape, "count": 512, "noise": 0.05}), &[]));
    root.join("data")
}

fn train_params(model: Value, steps: usize, more: Value) -> Value {
    let mut params = json!({
        "model": model, "data": {"$stage": "points"},
        "schedule": {"kind": "schedule", "variant": "linear", "steps": 50},
        "steps": steps, "batch": 64, "lr": 2e-3, "warmup": 5, "ema": 0.9, "seed": 3
    });
    params.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    params
}

#[test]
fn a_killed_python_training_resumes_to_the_weights_of_an_uninterrupted_run() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = toy_data(root, "moons");
    let params = train_params(toy_net(2), 60, json!({"uncond_p": 0.2, "checkpoint_every": 20}));
    let inputs = [("points", "dataset", data.as_path())];
    let whole = write_job(root, "whole", ("train", "diffusion"), params.clone(), &inputs);
    let killed = write_job(root, "killed", ("train", "diffusion"), params, &inputs);
    run_job(&whole);

    // The worker's test hook aborts the run when it reports step 31, after the checkpoint at 20.
    let aborted = Command::new(WORKER).arg(&killed).env("DIFFLOW_ABORT_AT", "31").output().unwrap();
    assert!(!aborted.status.success(), "the aborted run reports failure");
    let state = std::fs::read_to_string(root.join("killed/checkpoint/state.json")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&state).unwrap()["step"], 20, "the last checkpoint before the kill");

    let resumed = run_job(&killed);
    let events = String::from_utf8_lossy(&resumed.stdout);
    assert!(events.contains("resuming from the checkpoint at step 20"), "{events}");
    for file in ["model.safetensors", "ema.safetensors", "optimizer.safetensors"] {
        let (a, b) = (weights(&root.join("whole").join(file)), weights(&root.join("killed").join(file)));
        assert_eq!(a.iter().map(|w| &w.0).collect::<Vec<_>>(), b.iter().map(|w| &w.0).collect::<Vec<_>>(), "{file}");
        for ((name, ta), (_, tb)) in a.iter().zip(&b) {
            assert!(ta.equal(tb), "{file}: `{name}` of the resumed run differs from the uninterrupted one");
        }
    }
    let loss = |dir: &str| std::fs::read_to_string(root.join(dir).join("loss.csv")).unwrap();
    assert_eq!(loss("killed"), loss("whole"), "identical loss logs");
}

#[test]
fn two_ranks_train_the_python_net_one_process_trains() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = toy_data(root, "moons");
    let params = train_params(toy_net(2), 20, json!({"uncond_p": 0.2, "grad_clip": 1.0}));
    let inputs = [("points", "dataset", data.as_path())];
    run_ranks(&write_job(root, "one", ("train", "diffusion"), params.clone(), &inputs), 1);
    run_ranks(&write_job(root, "two", ("train", "diffusion"), params, &inputs), 2);
    let start = weights(&root.join("one/model.safetensors"));
    for file in ["model.safetensors", "ema.safetensors"] {
        let diff = relative_difference(&root.join("two").join(file), &root.join("one").join(file));
        println!("{file}: relative difference (L2) between 2 ranks and 1 process = {diff:.3e}");
        assert!(diff <= 1e-5, "{file} differs by {diff:e} (relative)");
    }
    assert!(!start.is_empty());
}

/// Trains the conditional toy net on the eight Gaussians (labels 0…7, 8 the null class).
fn trained_conditional_net(root: &Path) -> (PathBuf, PathBuf) {
    let data = toy_data(root, "gaussians8");
    let params = train_params(toy_net(8), 150, json!({"uncond_p": 0.2}));
    run_job(&write_job(root, "fit", ("train", "diffusion"), params, &[("points", "dataset", &data)]));
    (data, root.join("fit"))
}

#[test]
fn every_sampler_family_guidance_and_the_nll_bound_draw_from_a_python_net() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (data, fit) = trained_conditional_net(root);
    let cfg = json!({"kind": "guidance", "variant": "cfg", "scale": 2.0});
    let samplers = [
        ("ddpm", json!({"kind": "sampler", "variant": "ddpm", "steps": 20})),
        ("ddim", json!({"kind": "sampler", "variant": "ddim", "steps": 10, "eta": 0.0})),
        ("heun", json!({"kind": "sampler", "variant": "heun", "steps": 6})),
        ("dpm_solver", json!({"kind": "sampler", "variant": "dpm_solver", "steps": 8})),
    ];
    for (name, sampler) in samplers {
        for guided in [false, true] {
            let mut params = json!({"from": {"$stage": "fit"}, "sampler": sampler, "count": 64, "seed": 1});
            if guided {
                params["guidance"] = cfg.clone();
            }
            let instance = format!("{name}{}", if guided { "_cfg" } else { "" });
            run_job(&write_job(root, &instance, ("sample", "default"), params, &[("fit", "train", &fit)]));
            let samples = difflow_engine::data::Dataset::read(&root.join(&instance)).unwrap();
            assert_eq!(samples.values.size(), [64, 2], "{instance}");
            let largest = samples.values.abs().max().double_value(&[]);
            assert!(largest.is_finite() && largest < 10.0, "{instance}: a sample lies at |x| = {largest}");
        }
    }
    let params = json!({"from": {"$stage": "fit"}, "data": {"$stage": "points"}, "count": 64});
    let inputs = [("fit", "train", fit.as_path()), ("points", "dataset", data.as_path())];
    run_job(&write_job(root, "nll", ("nll", "default"), params, &inputs));
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("nll/metrics.json")).unwrap()).unwrap();
    let bpd = metrics["bpd"].as_f64().unwrap_or(f64::NAN);
    assert!(bpd.is_finite() && bpd > 0.0, "bits/dim {bpd}: {metrics}");
}

/// A train entry records its module file by the absolute path it was trained from; a
/// stage that reads the entry from another folder (a moved project, a shared cache) builds
/// the net from the file its own pipeline names for the train stage.
#[test]
fn sampling_an_entry_trained_elsewhere_builds_the_net_from_the_readers_module_file() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = toy_data(root, "moons");
    let (before, after) = (root.join("before"), root.join("after"));
    let model = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(fixture(), dir.join("toy_net.py")).unwrap();
        let mut model = toy_net(0);
        model["file"] = json!(dir.join("toy_net.py"));
        model
    };
    let trained_with = model(&before);
    run_job(&write_job(
        root,
        "fit",
        ("train", "diffusion"),
        train_params(trained_with, 10, json!({})),
        &[("points", "dataset", &data)],
    ));
    std::fs::remove_dir_all(&before).unwrap();

    let sampler = json!({"kind": "sampler", "variant": "ddim", "steps": 5, "eta": 0.0});
    let params = json!({"from": {"$stage": "fit"}, "sampler": sampler, "count": 16, "seed": 1});
    let job = write_job(root, "gen", ("sample", "default"), params, &[("fit", "train", &root.join("fit"))]);
    // The reader's record of `fit`, as the front end writes it: the stage's parameters.
    let mut text: Value = serde_json::from_str(&std::fs::read_to_string(&job).unwrap()).unwrap();
    text["inputs"]["fit"]["params"] = json!({"model": model(&after)});
    std::fs::write(&job, text.to_string()).unwrap();
    run_job(&job);
    assert_eq!(difflow_engine::data::Dataset::read(&root.join("gen")).unwrap().values.size(), [16, 2]);
}
