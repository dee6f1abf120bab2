//! `difflow run --nproc 2` with the real worker: train and sample stages run on two
//! data-parallel ranks (Gloo on the loopback) and get the same stage keys as a
//! single-process run, so either run's cache entries serve the other.

mod cli_support;

use std::ffi::OsStr;
use std::path::Path;

use cli_support::{difflow_real, lock_keys, tiny_toy, toy_train, TOY_SETUP};

fn pipeline() -> String {
    tiny_toy(10, "1e-4", "5", false)
}

/// Training alone, with checkpoints a rank can resume from.
fn checkpointed() -> String {
    format!("{TOY_SETUP}{}", toy_train("20", "1e-3", ", checkpoint_every = 5"))
}

fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    difflow_real(dir, args, &[])
}

#[test]
fn two_ranks_run_the_stages_under_the_keys_of_one_process() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [one.path(), two.path()] {
        std::fs::write(dir.join("toy.diff"), pipeline()).unwrap();
    }
    let (code, out, err) = difflow(one.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = difflow(two.path(), &["run", "toy.diff", "--device", "cpu", "--nproc", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(lock_keys(one.path()), lock_keys(two.path()));
    assert_eq!(lock_keys(one.path()).len(), 3);

    // The process count is not part of the recipe: a rerun with another count does nothing.
    let (code, out, err) = difflow(two.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.lines().all(|l| !l.starts_with("done ")), "{out}");
}

#[test]
fn nproc_by_kind_in_the_settings_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("toy.diff"), pipeline()).unwrap();
    std::fs::write(dir.path().join("difflow.toml"), "nproc = { train = 2, plot = 2 }\n").unwrap();
    let (code, _, err) = difflow(dir.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_ne!(code, 0);
    assert!(err.contains("`nproc` names the stage kind `plot`, which runs on one process"), "{err}");
}

fn lock_outputs(dir: &Path) -> toml::Value {
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("difflow.lock")).unwrap()).unwrap();
    lock["stages"]["ddpm"]["outputs"].clone()
}

#[test]
fn a_lost_rank_fails_the_run_naming_it_and_the_rerun_resumes_to_the_uninterrupted_weights() {
    let (whole, killed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [whole.path(), killed.path()] {
        std::fs::write(dir.join("p.diff"), checkpointed()).unwrap();
        std::fs::write(dir.join("difflow.toml"), "threads = 1\n").unwrap();
    }
    let (code, out, err) = difflow(whole.path(), &["run", "p.diff", "--device", "cpu", "--nproc", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Rank 1 dies (abort, as a kill) when it reports step 12, after the checkpoint at 10.
    let started = std::time::Instant::now();
    let abort = [("DIFFLOW_ABORT_AT", OsStr::new("12")), ("DIFFLOW_ABORT_RANK", OsStr::new("1"))];
    let (code, out, err) = difflow_real(killed.path(), &["run", "p.diff", "--device", "cpu", "--nproc", "2"], &abort);
    let waited = started.elapsed();
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(err.contains("rank 1 of 2 was lost"), "{err}");
    assert!(waited < std::time::Duration::from_secs(60), "the run took {waited:?} to fail");
    println!("the run failed {:.2} s after its start", waited.as_secs_f64());
    println!("{}", err.lines().find(|l| l.contains("rank 1 of 2")).unwrap_or_default());
    let lock = std::fs::read_to_string(killed.path().join("difflow.lock")).unwrap_or_default();
    let lock: toml::Value = toml::from_str(&lock).unwrap();
    assert!(lock.get("stages").and_then(|s| s.get("ddpm")).is_none(), "the failed stage is not cached: {lock}");

    let (code, out, err) = difflow(killed.path(), &["run", "p.diff", "--device", "cpu", "--nproc", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(format!("{out}{err}").contains("resuming from the checkpoint at step 10"), "{out}\n{err}");
    assert_eq!(lock_outputs(killed.path()), lock_outputs(whole.path()));
}
