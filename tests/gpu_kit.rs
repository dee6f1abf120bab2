//! The GPU kit's run script in its `--cpu` mode, against the freshly built binaries and the
//! venv's torch: the device checks, `difflow check` on the pipelines and the speed table
//! (without torch.compile, whose compilation alone takes minutes on a CPU) must all run, so
//! that the kit cannot rot between the runs on a GPU machine. The NCCL shim must load and
//! the NCCL group check, which needs a GPU, must say that it was skipped.

mod cli_support;

use std::path::PathBuf;
use std::process::Command;

use cli_support::{repo, venv};

#[test]
fn gpu_kit_cpu_mode_checks_and_times_every_workload() {
    let difflow = PathBuf::from(env!("CARGO_BIN_EXE_difflow"));
    let worker = difflow.with_file_name(format!("difflow-worker{}", std::env::consts::EXE_SUFFIX));
    assert!(
        worker.is_file(),
        "{} is missing: build it with `cargo build --release -p difflow-engine`",
        worker.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table.txt");
    let out = Command::new("bash")
        .arg(repo().join("scripts/gpu_kit_run.sh"))
        .args(["--cpu", "--quick", "--worker"])
        .arg(&worker)
        .arg("--difflow")
        .arg(&difflow)
        .arg("--py-dir")
        .arg(repo().join("scripts"))
        .arg("--pipelines")
        .arg(repo().join("pipelines"))
        .arg("--out")
        .arg(&table)
        .env("KIT_TORCH_VENV", venv())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the kit failed\nstdout:\n{stdout}\nstderr:\n{stderr}");

    let checks: Vec<serde_json::Value> =
        stdout.lines().filter(|l| l.starts_with("{\"check\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = checks.iter().map(|c| c["check"].as_str().unwrap()).collect();
    for expected in [
        "unet_forward",
        "train_loss_fp32",
        "train_grad_norm_fp32",
        "train_loss_bf16",
        "train_steps_fp32",
        "train_steps_bf16",
        "sample_ddim",
        "sample_ddpm",
        "sample_dpm_solver",
        "inception_pool3",
        "nccl_shim_loads",
        "nccl_world1",
    ] {
        assert!(names.contains(&expected), "no `{expected}` check in {names:?}");
    }
    // On the CPU the NCCL group check is skipped, saying why; every other check passes.
    let (skipped, measured): (Vec<_>, Vec<_>) = checks.iter().partition(|c| c["skipped"] == true);
    assert!(measured.iter().all(|c| c["ok"] == true), "{checks:?}");
    let skipped: Vec<&str> = skipped.iter().map(|c| c["check"].as_str().unwrap()).collect();
    assert_eq!(skipped, ["nccl_world1"], "{checks:?}");
    let world = checks.iter().find(|c| c["check"] == "nccl_world1").unwrap();
    assert!(world["note"].as_str().unwrap().starts_with("skipped: "), "{world}");
    assert_eq!(world["ok"], serde_json::Value::Null, "{world}");
    assert!(stdout.contains("pipelines pass"), "{stdout}");

    let text = std::fs::read_to_string(&table).unwrap();
    for (task, contender) in [("train", "difflow"), ("train", "eager"), ("sample", "difflow"), ("inception", "eager")] {
        let row = text.lines().find(|l| l.contains(task) && l.contains(contender));
        let row = row.unwrap_or_else(|| panic!("no {contender} row for {task} in\n{text}"));
        let words: Vec<&str> = row.split_whitespace().collect();
        let at = words.iter().position(|w| *w == contender).unwrap();
        let ms: f64 = words[at + 1].parse().unwrap_or(f64::NAN);
        assert!(ms > 0.0 && ms.is_finite(), "{row}");
    }
    assert!(text.contains("device checks:"), "{text}");
}
