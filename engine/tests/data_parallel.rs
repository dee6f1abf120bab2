//! Data-parallel training over c10d (Gloo, two CPU processes on the loopback): a tiny UNet
//! trained for 20 steps on the embedded MNIST with 2 ranks ends with the weights of a
//! single-process run of the same global batch, up to floating-point summation order; so
//! does a noisy classifier.
//! (Adam turns that rounding noise into differences proportional to the learning rate on
//! parameters whose gradient is near zero, hence the modest `lr` here.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ranks::{free_port, relative_difference, run_ranks, spawn_rank};
use common::stage_job;
use difflow_core::job::Input;
use serde_json::{json, Value};

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");
/// The agreement the issue demands between 1 and 2 processes.
const RELATIVE_TOLERANCE: f64 = 1e-5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn write_job(work: &Path, name: &str, kind: &str, variant: &str, params: Value, inputs: &[(&str, Input)]) -> PathBuf {
    let inputs = inputs.iter().map(|(n, i)| (n.to_string(), i.clone()));
    let job = stage_job(name, (kind, variant), &params, inputs, &work.join(name));
    let file = work.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_string(&job).unwrap()).unwrap();
    file
}

/// The same stage as job `one` (run it on 1 process) and job `two` (on 2 ranks).
fn one_and_two(
    work: &Path,
    (kind, variant): (&str, &str),
    params: Value,
    inputs: &[(&str, Input)],
) -> (PathBuf, PathBuf) {
    (
        write_job(work, "one", kind, variant, params.clone(), inputs),
        write_job(work, "two", kind, variant, params, inputs),
    )
}

/// `file` of job `two` is job `one`'s up to summation order.
fn assert_ranks_agree(work: &Path, file: &str) {
    let diff = relative_difference(&work.join("two").join(file), &work.join("one").join(file));
    println!("{file}: relative difference (L2) between 2 ranks and 1 process = {diff:.3e}");
    assert!(diff <= RELATIVE_TOLERANCE, "{file} differs by {diff:e} (relative)");
}

/// A small encoder (a classifier network).
fn encoder(channels: i64) -> Value {
    json!({"kind": "model", "variant": "encoder", "channels": channels, "mults": [1, 2], "res_blocks": 1,
           "attention": [], "dropout": 0.0})
}

/// Writes the MNIST dataset stage and returns it as an input, with the train parameters.
fn digits_and_params(work: &Path) -> (Input, Value) {
    let mnist = repo().join("data/mnist");
    assert!(mnist.join("train-images-idx3-ubyte.gz").exists(), "{} is missing: run scripts/setup.sh", mnist.display());
    let digits =
        write_job(work, "digits", "dataset", "mnist", json!({"path": mnist, "split": "train", "size": 8}), &[]);
    run_ranks(&digits, 1);
    let data = Input { kind: "dataset".into(), variant: "mnist".into(), params: json!({}), dir: work.join("digits") };

    let params = json!({
        "model": {"kind": "model", "variant": "unet", "channels": 16, "mults": [1, 2], "res_blocks": 1,
                  "attention": [], "dropout": 0.0, "classes": 10},
        "data": {"$stage": "digits"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 100},
        "uncond_p": 0.1, "steps": 20, "batch": 16, "lr": 2e-4, "warmup": 5, "grad_clip": 1.0, "ema": 0.9, "seed": 3,
        "checkpoint_every": 5
    });
    (data, params)
}

#[test]
fn two_ranks_train_the_weights_one_process_trains() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (data, params) = digits_and_params(work);
    let (one, two) = one_and_two(work, ("train", "diffusion"), params, &[("digits", data)]);
    run_ranks(&one, 1);
    run_ranks(&two, 2);

    for file in ["model.safetensors", "ema.safetensors"] {
        assert_ranks_agree(work, file);
    }
    let steps = |dir: &str| std::fs::read_to_string(work.join(dir).join("loss.csv")).unwrap().lines().count();
    assert_eq!(steps("two"), 21, "rank 0 wrote the loss of every step");
    assert_eq!(steps("one"), steps("two"));
}

#[test]
fn a_lost_rank_fails_the_stage_and_the_rerun_resumes_to_the_same_weights() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (data, params) = digits_and_params(work);
    let whole = write_job(work, "whole", "train", "diffusion", params.clone(), &[("digits", data.clone())]);
    let killed = write_job(work, "killed", "train", "diffusion", params, &[("digits", data)]);
    run_ranks(&whole, 2);

    // Rank 1 aborts when it reports step 12 (after the checkpoint at step 10): rank 0 must
    // fail at its next all-reduce instead of hanging.
    let port = free_port();
    let started = Instant::now();
    let survivor = spawn_rank(&killed, 0, 2, port, &[]);
    let lost = spawn_rank(&killed, 1, 2, port, &[("DIFFLOW_ABORT_AT", "12")]);
    assert!(!lost.wait_with_output().unwrap().status.success());
    let out = survivor.wait_with_output().unwrap();
    let waited = started.elapsed();
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rank 0 finished without its peer");
    assert!(message.contains("rank 0: all-reduce failed"), "{message}");
    assert!(waited < Duration::from_secs(60), "rank 0 took {waited:?} to notice");
    println!("rank 0 failed {:.2} s after the start: {}", waited.as_secs_f64(), message.trim());
    assert!(!work.join("killed/ema.safetensors").exists(), "a failed stage has no outputs");
    assert!(work.join("killed/checkpoint/state.json").exists());

    run_ranks(&killed, 2);
    for file in ["model.safetensors", "ema.safetensors"] {
        let diff = relative_difference(&work.join("killed").join(file), &work.join("whole").join(file));
        assert_eq!(diff, 0.0, "{file}: the resumed run differs from the whole one");
    }
}

#[test]
fn two_ranks_sample_what_one_process_samples() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (data, params) = digits_and_params(work);
    let ddpm = write_job(work, "ddpm", "train", "diffusion", params, &[("digits", data)]);
    run_ranks(&ddpm, 1);
    let from = Input { kind: "train".into(), variant: "diffusion".into(), params: json!({}), dir: work.join("ddpm") };
    let params = json!({
        "from": {"$stage": "ddpm"}, "sampler": {"kind": "sampler", "variant": "ddim", "steps": 4, "eta": 1.0},
        "count": 64, "batch": 16, "seed": 5, "guidance": {"kind": "guidance", "variant": "cfg", "scale": 2.0},
        "trajectory": 2
    });
    let (one, two) = one_and_two(work, ("sample", "default"), params, &[("ddpm", from)]);
    run_ranks(&one, 1);
    run_ranks(&two, 2);
    // The TensorBoard log of the grid holds wall-clock times and the process id: not compared.
    let mut files: Vec<_> = std::fs::read_dir(work.join("one"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != difflow_core::job::LOG_DIR)
        .collect();
    files.sort();
    assert!(files.len() >= 3, "samples, grid and trajectory: {files:?}");
    for file in files {
        let read = |dir: &str| std::fs::read(work.join(dir).join(&file)).unwrap();
        assert!(read("one") == read("two"), "{file:?} differs between 2 ranks and 1 process");
    }
}

#[test]
fn two_ranks_train_the_classifier_one_process_trains() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (data, _) = digits_and_params(work);
    // A noisy classifier: the timesteps and noise are drawn for the global batch too.
    let params = json!({
        "model": encoder(16),
        "data": {"$stage": "digits"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 100},
        "steps": 20, "batch": 16, "lr": 2e-4, "seed": 3
    });
    let (one, two) = one_and_two(work, ("classifier", "default"), params, &[("digits", data)]);
    run_ranks(&one, 1);
    run_ranks(&two, 2);
    assert_ranks_agree(work, "classifier.safetensors");
    let meta = |dir: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(work.join(dir).join("meta.json")).unwrap()).unwrap()
    };
    assert_eq!(meta("one")["accuracy"], meta("two")["accuracy"], "the held-out accuracy");
}

#[test]
fn two_ranks_extract_the_features_one_process_extracts() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (data, _) = digits_and_params(work);
    let params =
        json!({"model": encoder(8), "data": {"$stage": "digits"}, "steps": 5, "batch": 16, "lr": 1e-3, "seed": 3});
    let judge = write_job(work, "judge", "classifier", "default", params, &[("digits", data.clone())]);
    run_ranks(&judge, 1);
    let features =
        Input { kind: "classifier".into(), variant: "default".into(), params: json!({}), dir: work.join("judge") };
    // An odd count, so that the ranks' shares differ in size.
    let mnist = repo().join("data/mnist");
    let few = write_job(work, "few", "dataset", "mnist", json!({"path": mnist, "size": 8, "limit": 301}), &[]);
    run_ranks(&few, 1);
    let few = Input { kind: "dataset".into(), variant: "mnist".into(), params: json!({}), dir: work.join("few") };
    let params = json!({"of": {"$stage": "few"}, "features": {"$stage": "judge"}});
    let inputs = [("few", few), ("judge", features)];
    let (one, two) = one_and_two(work, ("stats", "default"), params, &inputs);
    run_ranks(&one, 1);
    // Each rank extracts its half: rank 0's features phase covers half of the items.
    let port = free_port();
    let rank0 = Command::new(WORKER)
        .arg(&two)
        .env("DIFFLOW_RANK", "0")
        .env("DIFFLOW_WORLD_SIZE", "2")
        .env("DIFFLOW_STORE", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rank1 = spawn_rank(&two, 1, 2, port, &[]);
    let out = rank0.wait_with_output().unwrap();
    let other = rank1.wait_with_output().unwrap();
    for (rank, out) in [(0, &out), (1, &other)] {
        assert!(out.status.success(), "rank {rank} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let count: u64 = serde_json::from_str::<Value>(&std::fs::read_to_string(work.join("one/meta.json")).unwrap())
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    let phase = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|e| e["event"] == "begin"))
        .unwrap();
    assert_eq!(count, 301);
    assert_eq!(phase["total"].as_u64(), Some(count.div_ceil(2)), "{phase}");
    for file in ["features.safetensors", "stats.safetensors"] {
        assert_ranks_agree(work, file);
    }
}
