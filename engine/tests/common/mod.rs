//! Helpers shared by the engine's tests: jobs built as the front end builds them (the
//! schema's defaults filled in), and the `difflow` binary beside the worker.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod ranks;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use difflow_core::job::{Input, Job, JobSettings};
use serde_json::{json, Value};

/// The job of stage `instance` (`kind` `variant`) on the CPU, its `params` completed with
/// the schema's defaults, writing into `out`.
pub fn stage_job(
    instance: &str,
    (kind, variant): (&str, &str),
    params: &Value,
    inputs: impl IntoIterator<Item = (String, Input)>,
    out: &Path,
) -> Job {
    Job {
        instance: instance.into(),
        kind: kind.into(),
        variant: variant.into(),
        params: difflow_core::schema::with_defaults(kind, variant, params),
        inputs: inputs.into_iter().collect(),
        out_dir: out.to_path_buf(),
        device: "cpu".into(),
        settings: JobSettings::default(),
    }
}

/// An upstream entry in `dir` of a `kind` `variant` stage (its parameters left out).
pub fn input(kind: &str, variant: &str, dir: &Path) -> Input {
    Input { kind: kind.into(), variant: variant.into(), params: json!({}), dir: dir.to_path_buf() }
}

/// `target/<profile>`, where this test's executable (in `deps/`) and the binaries live.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The `difflow` binary, built here if needed (`cargo test -p difflow-engine` builds only
/// the worker), with the worker beside it.
pub fn difflow_binary() -> PathBuf {
    let profile = bin_dir().file_name().unwrap().to_string_lossy().into_owned();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build.current_dir(repo).args(["build", "-p", "difflow", "--bin", "difflow"]);
    if profile == "release" {
        build.arg("--release");
    }
    let output = build.output().expect("run cargo to build the difflow binary");
    // An older binary would test code that is no longer the tree's: a failed build fails.
    assert!(
        output.status.success(),
        "building the difflow binary failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = bin_dir().join("difflow");
    assert!(bin_dir().join("difflow-worker").exists(), "difflow-worker is not built beside {}", path.display());
    path
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A project in `dir`: `difflow.toml` (user cache `uc`, `threads` threads) and `p.diff`,
/// the dataset `digits` (the first `limit` MNIST test digits at 16×16) then `rest`.
pub fn mnist_project(dir: &Path, threads: u32, limit: u32, rest: &str) {
    let mnist = repo_root().join("data/mnist");
    assert!(mnist.is_dir(), "{} is missing: run `. scripts/setup.sh`", mnist.display());
    std::fs::write(dir.join("difflow.toml"), format!("user_cache = \"uc\"\nthreads = {threads}\n")).unwrap();
    let digits = format!(
        "dataset digits = mnist {{ path = \"{}\", split = \"test\", limit = {limit}, size = 16 }}\n",
        mnist.display()
    );
    std::fs::write(dir.join("p.diff"), digits + rest).unwrap();
}

/// The project venv's python (torch and diffusers: the oracles of the tests).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("DIFFLOW_VENV").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv"));
    let p = venv.join("bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `. scripts/setup.sh` (torch) and `bash scripts/setup_tests.sh` (diffusers) first",
        p.display()
    );
    p
}

/// Runs `engine/tests/reference/diffusers_oracle.py COMMAND DIR` offline; panics with its
/// stderr when it fails.
pub fn oracle(command: &str, dir: &Path) {
    let out = Command::new(python())
        .arg(repo_root().join("engine/tests/reference/diffusers_oracle.py"))
        .arg(command)
        .arg(dir)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the diffusers oracle failed (is diffusers installed? `bash scripts/setup_tests.sh` installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves `files` (URL path → bytes) over HTTP/1.1 on 127.0.0.1, answering HEAD and GET
/// (404 for anything else); returns the base URL.
pub fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let files = std::sync::Arc::new(files);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut words = line.split_whitespace();
                let method = words.next().unwrap_or("GET").to_string();
                let path = words.next().unwrap_or("/").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                        let _ = stream.write_all(head.as_bytes());
                        if method == "GET" {
                            let _ = stream.write_all(body);
                        }
                    }
                    None => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            });
        }
    });
    base
}

/// `n` 1 × 8 × 8 images in `work/data`, whose path it returns: class 0 bright on the left
/// half, class 1 on the right, plus noise.
pub fn two_class_data(work: &Path, n: i64) -> PathBuf {
    use difflow_engine::data::{DataMeta, DataType, Dataset};
    use tch::{Device, Kind, Tensor};
    let dir = work.join("data");
    tch::manual_seed(0);
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
    let cols = Tensor::arange(8, (Kind::Int64, Device::Cpu)).view([1, 1, 1, 8]);
    let left = cols.lt(4).to_kind(Kind::Float);
    let is0 = labels.eq(0).to_kind(Kind::Float).view([n, 1, 1, 1]);
    let pattern: Tensor = &is0 * &left + (1.0 - &is0) * (1.0 - &left);
    let noise = Tensor::rand([n, 1, 8, 8], (Kind::Float, Device::Cpu)) * 60.0;
    let images = (pattern * 180.0 + noise).clamp(0.0, 255.0).to_kind(Kind::Uint8);
    let meta =
        DataMeta { data_type: DataType::Images, shape: vec![1, 8, 8], classes: 2, count: n as usize, flip: false };
    Dataset::new(meta, images, labels).unwrap().write(&dir, "data.safetensors").unwrap();
    dir
}
