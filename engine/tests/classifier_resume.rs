//! A classifier stage stopped at a step boundary (SIGTERM, as Slurm's preemption sends it)
//! or killed after a periodic checkpoint resumes from its checkpoint and ends with the
//! weights and held-out accuracy of an uninterrupted run, bit for bit.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{input, stage_job, two_class_data};
use serde_json::json;
use tch::Tensor;

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");
const STEPS: u64 = 40;

/// The job file of a noisy classifier writing into `root/name`, and that folder.
fn classifier_job(root: &Path, data: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let params = json!({
        "model": {"kind": "model", "variant": "encoder", "channels": 8, "mults": [1, 2], "res_blocks": 1,
                  "attention": [], "dropout": 0.0},
        "data": {"$stage": "d"},
        "schedule": {"kind": "schedule", "variant": "cosine", "steps": 50},
        "steps": STEPS, "batch": 16, "lr": 3e-3, "seed": 5, "checkpoint_every": 10
    });
    let out = root.join(name);
    let mut job =
        stage_job(name, ("classifier", "default"), &params, [("d".into(), input("dataset", "x", data))], &out);
    job.settings.threads = 1;
    let file = root.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_string(&job).unwrap()).unwrap();
    (file, out)
}

fn worker(job: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(WORKER).arg(job).envs(env.iter().copied()).stderr(Stdio::piped()).output().unwrap()
}

fn checkpoint_step(out: &Path) -> u64 {
    let state = std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&state).unwrap()["step"].as_u64().unwrap()
}

fn assert_same_result(whole: &Path, resumed: &Path) {
    let read = |dir: &Path| {
        let mut named = Tensor::read_safetensors(dir.join("classifier.safetensors")).unwrap();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    };
    let (a, b) = (read(whole), read(resumed));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na}: the resumed run's weights differ from the uninterrupted run's");
    }
    let meta = |dir: &Path| std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert_eq!(meta(whole), meta(resumed), "the same held-out accuracy");
    assert!(!resumed.join("checkpoint").exists(), "the finished run removes its checkpoint");
}

#[test]
fn a_stopped_or_killed_classifier_resumes_to_the_same_weights() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = two_class_data(root, 64);
    let (whole_job, whole) = classifier_job(root, &data, "whole");
    let out = worker(&whole_job, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // SIGTERM once step 17 is done: the worker checkpoints step 17 and exits 3.
    let (stopped_job, stopped) = classifier_job(root, &data, "stopped");
    let out = worker(&stopped_job, &[("DIFFLOW_STOP_AT", "17")]);
    assert_eq!(
        out.status.code(),
        Some(difflow_core::job::WORKER_INTERRUPTED),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped at step 17 of 40"));
    assert_eq!(checkpoint_step(&stopped), 17);
    assert!(!stopped.join("classifier.safetensors").exists(), "a stopped run has no outputs");
    let out = worker(&stopped_job, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resuming from the checkpoint at step 17"));
    assert_same_result(&whole, &stopped);

    // Killed outright at step 26: the periodic checkpoint of step 20 is what is left.
    let (killed_job, killed) = classifier_job(root, &data, "killed");
    let out = worker(&killed_job, &[("DIFFLOW_ABORT_AT", "26")]);
    assert!(!out.status.success());
    assert_eq!(checkpoint_step(&killed), 20);
    let out = worker(&killed_job, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("resuming from the checkpoint at step 20"));
    assert_same_result(&whole, &killed);
}
