//! `difflow run --nproc 2` with the real worker: train and sample stages run on two
//! data-parallel ranks (Gloo on the loopback) and get the same stage keys as a
//! single-process run, so either run's cache entries serve the other.

use std::path::{Path, PathBuf};
use std::process::Command;

const PIPELINE: &str = r#"
dataset pts = toy { shape = "gaussians8", count = 256 }
schedule lin = linear { steps = 50 }
model net = mlp { hidden = 32, layers = 2 }
train ddpm { model = net, data = pts, schedule = lin, steps = 10, batch = 64, lr = 1e-4 }
sample gen { from = ddpm, sampler = ddim { steps = 5 }, count = 32 }
"#;

fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_difflow"));
    let worker = exe.with_file_name(format!("difflow-worker{}", std::env::consts::EXE_SUFFIX));
    assert!(
        worker.is_file(),
        "{} is missing: build it with `cargo build --release -p difflow-engine`",
        worker.display()
    );
    let out = Command::new(exe).args(args).current_dir(dir).env("DIFFLOW_WORKER", worker).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn keys(dir: &Path) -> Vec<(String, String)> {
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("difflow.lock")).unwrap()).unwrap();
    let stages = lock["stages"].as_table().unwrap();
    stages.iter().map(|(name, entry)| (name.clone(), entry["key"].as_str().unwrap().to_string())).collect()
}

#[test]
fn two_ranks_run_the_stages_under_the_keys_of_one_process() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [one.path(), two.path()] {
        std::fs::write(dir.join("toy.diff"), PIPELINE).unwrap();
    }
    let (code, out, err) = difflow(one.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = difflow(two.path(), &["run", "toy.diff", "--device", "cpu", "--nproc", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(keys(one.path()), keys(two.path()));
    assert_eq!(keys(one.path()).len(), 3);

    // The process count is not part of the recipe: a rerun with another count does nothing.
    let (code, out, err) = difflow(two.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.lines().all(|l| !l.starts_with("done ")), "{out}");
}

#[test]
fn nproc_by_kind_in_the_settings_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("toy.diff"), PIPELINE).unwrap();
    std::fs::write(dir.path().join("difflow.toml"), "nproc = { train = 2, plot = 2 }\n").unwrap();
    let (code, _, err) = difflow(dir.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_ne!(code, 0);
    assert!(err.contains("`nproc` names the stage kind `plot`, which runs on one process"), "{err}");
}
