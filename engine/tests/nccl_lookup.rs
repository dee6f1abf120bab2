//! The worker finds the NCCL shim relative to its own executable, as in a GPU kit carried
//! to another machine: a copy of the worker with the shim beside it (or in the kit's
//! `lib/` beside `bin/`) loads that copy, and without a GPU gets past the lookup to the
//! clear "no CUDA device" error of the NCCL group. Like the kit's run.sh, the test puts
//! libtorch's folder on LD_LIBRARY_PATH: the copies lie where the worker's rpath, relative
//! to the worker, reaches no torch.

use std::path::{Path, PathBuf};
use std::process::Command;

use difflow_engine::dist::{nccl_built, NCCL_SHIM_FILE};

const BUILT_SHIM: &str = env!("DIFFLOW_NCCL_SHIM");

/// `difflow-worker` under `dir` at `exe` (a hard link when the file system allows, so
/// that the worker's own path is the copy's) and the shim at `shim`, both relative to `dir`.
fn place_worker(dir: &Path, exe: &str, shim: &str) -> PathBuf {
    let worker = PathBuf::from(env!("CARGO_BIN_EXE_difflow-worker"));
    let (exe, shim) = (dir.join(exe), dir.join(shim));
    for path in [&exe, &shim] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    }
    if std::fs::hard_link(&worker, &exe).is_err() {
        std::fs::copy(&worker, &exe).unwrap();
    }
    std::fs::copy(BUILT_SHIM, &shim).unwrap();
    exe
}

/// libtorch's folder: the project venv's torch (the one the worker was built against).
fn torch_lib() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv = std::env::var_os("DIFFLOW_VENV").map(PathBuf::from).unwrap_or_else(|| root.join(".venv"));
    let code = "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";
    let out = Command::new(venv.join("bin/python")).args(["-c", code]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn check_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().filter(|l| l.starts_with("{\"check\"")).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_worker_loads_the_nccl_shim_beside_it_or_in_the_kits_lib_folder() {
    assert!(nccl_built(), "the worker was built without the NCCL shim");
    // CARGO_TARGET_TMPDIR is on the build's file system, where a hard link works.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let _ = difflow_engine::device::load_cuda();
    let gpus = tch::Cuda::device_count();
    let lib = torch_lib();
    for (exe, shim) in [
        ("beside/difflow-worker", format!("beside/{NCCL_SHIM_FILE}")),
        ("kit/bin/difflow-worker", format!("kit/lib/{NCCL_SHIM_FILE}")),
    ] {
        let worker = place_worker(root.path(), exe, &shim);
        let out = Command::new(&worker)
            .args(["check-nccl", "--device", "cuda:0"])
            .env("LD_LIBRARY_PATH", &lib)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let checks = check_lines(&stdout);
        assert_eq!(checks.len(), 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
        let (loads, world) = (&checks[0], &checks[1]);
        assert_eq!(loads["check"], "nccl_shim_loads");
        assert_eq!(loads["ok"], true, "{loads}");
        let expected = format!("loaded {}", root.path().join(&shim).display());
        assert_eq!(loads["note"], expected.as_str(), "the worker did not take the shim beside it");
        assert_eq!(world["check"], "nccl_world1");
        if gpus == 0 {
            assert_eq!(world["ok"], false, "{world}");
            let note = world["note"].as_str().unwrap();
            let prefix = "rank 0 of 1 cannot join the NCCL (cuda:0) process group at 127.0.0.1:";
            assert!(note.starts_with(prefix), "{note}");
            assert!(
                note.ends_with(": no CUDA device cuda:0 (libtorch sees 0 CUDA device(s)); NCCL needs a GPU"),
                "{note}"
            );
            assert!(!out.status.success());
            assert_eq!(stderr.trim(), "error: 1 check(s) failed: nccl_world1");
        } else {
            assert_eq!(world["ok"], true, "{world}");
            assert!(out.status.success(), "{stderr}");
        }
    }
}

#[test]
fn without_a_gpu_in_the_run_the_nccl_group_check_is_skipped_and_says_why() {
    let worker = env!("CARGO_BIN_EXE_difflow-worker");
    let out = Command::new(worker).args(["check-nccl", "--device", "cpu"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let checks = check_lines(&stdout);
    let world = checks.iter().find(|c| c["check"] == "nccl_world1").expect("no nccl_world1 line");
    assert_eq!(world["skipped"], true, "{world}");
    assert_eq!(world["ok"], serde_json::Value::Null, "{world}");
    let _ = difflow_engine::device::load_cuda();
    let expected = if tch::Cuda::device_count() == 0 {
        "skipped: no GPU present (NCCL runs on GPUs only)"
    } else {
        "skipped: the checks run on the CPU (--device cpu)"
    };
    assert!(world["note"].as_str().unwrap().starts_with(expected), "{world}");
}
