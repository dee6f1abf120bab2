//! `difflow run --nproc 2` with the real worker: train and sample stages run on two
//! data-parallel ranks (Gloo on the loopback) and get the same stage keys as a
//! single-process run, so either run's cache entries serve the other.

mod cli_support;

use std::path::Path;

use cli_support::{difflow_real, lock_keys};

const PIPELINE: &str = r#"
dataset pts = toy { shape = "gaussians8", count = 256 }
schedule lin = linear { steps = 50 }
model net = mlp { hidden = 32, layers = 2 }
train ddpm { model = net, data = pts, schedule = lin, steps = 10, batch = 64, lr = 1e-4 }
sample gen { from = ddpm, sampler = ddim { steps = 5 }, count = 32 }
"#;

fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    difflow_real(dir, args, &[])
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
    std::fs::write(dir.path().join("toy.diff"), PIPELINE).unwrap();
    std::fs::write(dir.path().join("difflow.toml"), "nproc = { train = 2, plot = 2 }\n").unwrap();
    let (code, _, err) = difflow(dir.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_ne!(code, 0);
    assert!(err.contains("`nproc` names the stage kind `plot`, which runs on one process"), "{err}");
}
