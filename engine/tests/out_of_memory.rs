//! Under an address-space limit (`ulimit -v`, common on shared login nodes) a worker that
//! runs out of memory ends with exit 2 and "out of memory: needs N bytes, limit M",
//! whichever allocation fails (Rust's or libtorch's), never with an abort or a panic.
//!
//! The limit is set a little above what the worker has mapped once it is ready to read its
//! job (libtorch and its threads map much address space that is never touched), measured
//! by handing it the job through a FIFO and reading its VmSize while it waits.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use difflow_core::job::WORKER_STAGE_FAILED;
use serde_json::{json, Value};

const WORKER: &str = env!("CARGO_BIN_EXE_difflow-worker");

/// Room above the worker's mapped size at start-up: enough for the first small
/// allocations, far less than the job's activations (10,000 × 300 floats each).
const HEADROOM: u64 = 48 << 20;

/// Room for the pickle case: less than the 48 MiB its stack reaches.
const PICKLE_HEADROOM: u64 = 16 << 20;

fn job(dir: &Path, name: &str, (kind, variant): (&str, &str), params: Value, inputs: Value) -> String {
    json!({
        "instance": name, "kind": kind, "variant": variant, "inputs": inputs,
        "params": difflow_core::schema::with_defaults(kind, variant, &params),
        "out_dir": dir.join(name), "device": "cpu", "settings": {"threads": 1}
    })
    .to_string()
}

fn write_job(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The worker's VmSize in bytes once it waits for its job on a FIFO (so: after the dynamic
/// loader, libtorch's initialisers and `main`'s set-up), and how the job `text` it then
/// reads ends without a limit.
fn start_up_size(dir: &Path, text: &str) -> (u64, Output) {
    let fifo = dir.join("job.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: creates a FIFO at a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let mut child = Command::new(WORKER).arg(&fifo).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let size = loop {
        let status = std::fs::read_to_string(&status_path).unwrap();
        // Blocked in open(2) on the FIFO: sleeping, and the job is all it still needs.
        let waiting = std::fs::read_to_string(format!("/proc/{}/wchan", child.id())).unwrap_or_default();
        if waiting.contains("wait_for_partner") || waiting.contains("fifo") {
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .expect("VmSize in /proc/PID/status");
            break kib * 1024;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker never opened its job file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::fs::write(&fifo, text).unwrap();
    let out = child.wait_with_output().unwrap();
    std::fs::remove_file(&fifo).unwrap();
    (size, out)
}

/// Asserts that a run ended with the out-of-memory failure at `limit`, nothing else.
fn assert_out_of_memory((status, stderr): &(ExitStatus, String), limit: u64) {
    assert_eq!(status.code(), Some(WORKER_STAGE_FAILED), "{stderr}");
    assert!(stderr.contains("error: out of memory: needs "), "{stderr}");
    assert!(stderr.contains(&format!("bytes, limit {limit} ")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Runs the worker on `job` with its address space limited to `limit` bytes; a worker that
/// hangs (a panic that cannot allocate may deadlock) is killed after two minutes.
fn run_limited(job: &Path, limit: u64) -> (ExitStatus, String) {
    let stderr_path = job.with_extension("stderr");
    let mut command = Command::new(WORKER);
    command.arg(job).stdout(Stdio::null()).stderr(std::fs::File::create(&stderr_path).unwrap());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_AS, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker hung under the limit: {}", std::fs::read_to_string(&stderr_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&stderr_path).unwrap())
}

#[test]
fn training_a_wide_mlp_past_the_address_space_limit_says_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let points = job(dir, "points", ("dataset", "toy"), json!({"shape": "moons", "count": 10_000}), json!({}));
    let out = Command::new(WORKER).arg(write_job(dir, "points", &points)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inputs = json!({"points": {"kind": "dataset", "variant": "toy", "params": {}, "dir": dir.join("points")}});
    let train = |name: &str| {
        let params = json!({
            "model": {"kind": "model", "variant": "mlp", "hidden": 300, "layers": 3},
            "data": {"$stage": "points"},
            "schedule": {"kind": "schedule", "variant": "linear", "steps": 25},
            "steps": 2, "batch": 10_000
        });
        job(dir, name, ("train", "diffusion"), params, inputs.clone())
    };

    let (start_up, unlimited) = start_up_size(dir, &train("unlimited"));
    assert!(unlimited.status.success(), "the unlimited run failed: {}", String::from_utf8_lossy(&unlimited.stderr));
    let limit = start_up + HEADROOM;
    let out = run_limited(&write_job(dir, "limited", &train("limited")), limit);
    assert_out_of_memory(&out, limit);
    assert!(!dir.join("limited/ema.safetensors").exists());
}

/// 300,000 empty lists appended into each other: the interpreter's stack of 300,000 values
/// grows by doubling (a 32 MiB block at the end), which a Rust allocation aborts on.
#[test]
fn a_pickle_that_grows_the_interpreters_stack_past_the_limit_says_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let batches = dir.join("cifar-10-batches-py");
    std::fs::create_dir_all(&batches).unwrap();
    let mut pickle = vec![b']'; 300_001];
    pickle.extend(std::iter::repeat_n(b'a', 300_000));
    pickle.push(b'.');
    std::fs::write(batches.join("test_batch"), pickle).unwrap();
    let read = |name: &str| job(dir, name, ("dataset", "cifar10"), json!({"path": dir, "split": "test"}), json!({}));
    let (start_up, _) = start_up_size(dir, &read("unlimited"));
    let limit = start_up + PICKLE_HEADROOM;
    let out = run_limited(&write_job(dir, "limited", &read("limited")), limit);
    assert_out_of_memory(&out, limit);
}
