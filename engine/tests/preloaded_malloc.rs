//! The worker brings its own malloc (jemalloc) and C++ `operator new`; a malloc library the
//! user preloads for PyTorch (LD_PRELOAD, as its CPU tuning guide suggests; Debian's
//! libjemalloc2 here) must not split allocations between two heaps. Before the worker
//! defined `operator new` itself, libtorch's static initialisers crashed under it.

use std::io::Write;
use std::process::{Command, Stdio};

const PRELOADED: &str = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

#[test]
fn the_worker_trains_and_samples_under_a_preloaded_jemalloc() {
    if cfg!(not(target_arch = "x86_64")) {
        return;
    }
    assert!(
        std::path::Path::new(PRELOADED).exists(),
        "{PRELOADED} is missing: run `bash scripts/setup_tests.sh` (Debian's libjemalloc2)"
    );
    let model = r#"{"in_ch": 1, "size": 8, "channels": 16, "mults": [1, 2], "res_blocks": 1, "attention": [4], "dropout": 0.0, "classes": 3}"#;
    let mut child = Command::new(env!("CARGO_BIN_EXE_difflow-worker"))
        .args(["bench", "--model", model, "--device", "cpu", "--threads", "2", "--batch", "4", "--sample-count", "4"])
        .env("LD_PRELOAD", PRELOADED)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts");
    child.stdin.take().expect("piped").write_all(b"train 2\nsample 2\n").expect("the worker reads commands");
    let out = child.wait_with_output().expect("the worker finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"train_ms\"") && stdout.contains("\"sample_ms\""), "{stdout}");
}
