//! Under an address-space limit (`ulimit -v`, common on shared login nodes) a worker that
//! runs out of memory ends with exit 2 and "out of memory: needs N bytes, limit M",
//! whichever allocation fails (Rust's or libtorch's), never with an abort or a panic.
//!
//! The limit is set a little above the address space the worker needs to start and read
//! its job (libtorch and its threads map much address space that is never touched),
//! found by bisection on a job file that is not JSON.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
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

/// The address space the worker needs to start and read its job (the dynamic loader,
/// libtorch's initialisers, `main`'s set-up), to 4 MiB: the least limit under which it
/// gets as far as refusing a job file that is not JSON (bisection; a worker the job file
/// rule would refuse a FIFO, so it cannot be paused on one).
fn start_up_size(dir: &Path) -> u64 {
    let bad = write_job(dir, "not-json", "{");
    least_limit(&bad, |code, stderr| code == Some(WORKER_STAGE_FAILED) && stderr.contains("is not a valid difflow job"))
}

/// The least address-space limit (to 4 MiB) under which the worker's run of `job` ends as
/// `ends_well` (exit code, stderr) says: bisection between nothing and 8 GiB.
fn least_limit(job: &Path, ends_well: impl Fn(Option<i32>, &str) -> bool) -> u64 {
    let works =
        |limit: u64| try_run_limited(job, limit).is_some_and(|(status, stderr)| ends_well(status.code(), &stderr));
    let (mut low, mut high) = (0u64, 8u64 << 30);
    assert!(works(high), "the worker does not get through {} even with 8 GiB of address space", job.display());
    while high - low > 4 << 20 {
        let mid = low + (high - low) / 2;
        if works(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
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
    try_run_limited(job, limit).expect("the worker could not be started under the limit")
}

/// [`run_limited`], or `None` where the limit is too low to even load the worker.
fn try_run_limited(job: &Path, limit: u64) -> Option<(ExitStatus, String)> {
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
    let mut child = command.spawn().ok()?;
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
    Some((status, std::fs::read_to_string(&stderr_path).unwrap()))
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

    let unlimited = Command::new(WORKER).arg(write_job(dir, "unlimited", &train("unlimited"))).output().unwrap();
    assert!(unlimited.status.success(), "the unlimited run failed: {}", String::from_utf8_lossy(&unlimited.stderr));
    let limit = start_up_size(dir) + HEADROOM;
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
    // `depth` empty lists appended into each other, as a CIFAR-10 test batch under `root`
    // (not a real batch: the worker refuses it once the pickle is read).
    let batch_job = |name: &str, depth: usize| {
        let root = dir.join(format!("{name}-data"));
        let batches = root.join("cifar-10-batches-py");
        std::fs::create_dir_all(&batches).unwrap();
        let mut pickle = vec![b']'; depth + 1];
        pickle.extend(std::iter::repeat_n(b'a', depth));
        pickle.push(b'.');
        std::fs::write(batches.join("test_batch"), pickle).unwrap();
        let text = job(dir, name, ("dataset", "cifar10"), json!({"path": root, "split": "test"}), json!({}));
        write_job(dir, name, &text)
    };
    // What the whole path needs but the deep pickle's stack: the same job on a shallow one,
    // which the worker reads and then refuses as a batch (thread stacks, libtorch, the reader).
    let shallow = batch_job("shallow", 1_000);
    let baseline = least_limit(&shallow, |code, stderr| {
        code == Some(WORKER_STAGE_FAILED) && !stderr.contains("out of memory") && !stderr.contains("is not a valid")
    });
    let limit = baseline + PICKLE_HEADROOM;
    let out = run_limited(&batch_job("deep", 300_000), limit);
    assert_out_of_memory(&out, limit);
}
