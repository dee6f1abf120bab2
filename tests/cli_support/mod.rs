//! Helpers for the command-line tests: a project in a temp folder, the real `difflow`
//! binary, and a test double of the worker process (a Python script that writes one file
//! into the job's `out_dir`), to test the cache's commit, lock and crash semantics without
//! libtorch.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const TOY: &str = r#"# a toy pipeline
let T = 100
dataset pts = toy { shape = "gaussians8", count = 512 }
schedule lin = linear { steps = T }
model net = mlp { hidden = 64, layers = 2 }
train ddpm { model = net, data = pts, schedule = lin, steps = 20, batch = 64, lr = 1e-3 }
sample gen { from = ddpm, sampler = ddim { steps = sweep(5, 10) }, count = 64, batch = 32 }
plot pic = scatter { of = [pts, gen] }
"#;

/// The toy data, schedule and model the tests with the real worker train on: `pts`,
/// `lin` and `net`.
pub const TOY_SETUP: &str = r#"
dataset pts = toy { shape = "gaussians8", count = 256 }
schedule lin = linear { steps = 50 }
model net = mlp { hidden = 32, layers = 2 }
"#;

/// `train ddpm` on [`TOY_SETUP`]: `steps` steps at `lr`, then the keys in `more`
/// (`", checkpoint_every = 5"`).
pub fn toy_train(steps: &str, lr: &str, more: &str) -> String {
    format!("train ddpm {{ model = net, data = pts, schedule = lin, steps = {steps}, batch = 64, lr = {lr}{more} }}\n")
}

/// [`TOY_SETUP`] and [`toy_train`], DDIM sampling with `sampler_steps` (a number or a
/// `sweep(…)`), and with `plot` a scatter of data and samples.
pub fn tiny_toy(train_steps: u32, lr: &str, sampler_steps: &str, plot: bool) -> String {
    let train = toy_train(&train_steps.to_string(), lr, "");
    let mut text = format!(
        "{TOY_SETUP}{train}sample gen {{ from = ddpm, sampler = ddim {{ steps = {sampler_steps} }}, count = 32 }}\n"
    );
    if plot {
        text.push_str("plot pic = scatter { of = [pts, gen] }\n");
    }
    text
}

/// A guided MNIST study: CFG samples of a small UNet scored by FID and IS.
pub const CFG_STUDY: &str = r#"
use "std/unet.diff"
dataset digits = mnist { path = "data/mnist", split = "train" }
dataset ref = mnist { path = "data/mnist", split = "test" }
schedule cos = cosine { steps = 100 }
model net = unet_small { classes = 10 }
train ddpm { model = net, data = digits, schedule = cos, steps = 20, batch = 8, lr = 1e-3, uncond_p = 0.1 }
sample gen { from = ddpm, sampler = ddim { steps = 10 }, guidance = cfg { scale = 0.5 }, count = 64 }
metrics scores { samples = gen, reference = ref, features = "inception", measure = ["fid", "is"] }
"#;

/// The worker double, in Python so that it reads the job file as JSON: prints progress
/// and a metric, writes `<kind>.txt` (with the instance name) into out_dir, and `grid.png`
/// for a sample stage. With `FAIL_KIND=<kind>` it fails like a stage error (exit 2); with
/// `CRASH_KIND=<kind>` it writes a partial file (and for `train` a checkpoint) and dies by
/// SIGKILL; with `SLEEP=<s>` it
/// sleeps before finishing; with `RENDEZVOUS=<dir>` and `RENDEZVOUS_KIND=<kind>` it
/// waits until two workers of that kind are running at once (and fails after 60 s
/// alone, so a run that never overlaps them fails instead of hanging); with
/// `BIG_KIND=<kind>` and `BIG_BYTES=<n>` it also writes `big.bin`, n bytes of a fixed
/// pattern (a transfer long enough to interrupt).
const WORKER: &str = r#"#!/usr/bin/env python3
import json, os, signal, sys, time
job = json.load(open(sys.argv[1]))
out, kind, inst = job["out_dir"], job["kind"], job["instance"]
env = os.environ.get
if env("LOG"):
    with open(env("LOG"), "a") as log:
        log.write(inst + "\n")
def event(**e):
    print(json.dumps(e), flush=True)
event(event="begin", what="working", total=2)
event(event="progress", done=1, loss=0.5)
if kind == env("FAIL_KIND"):
    print("error: the data file is missing", file=sys.stderr)
    sys.exit(2)
if kind == env("CRASH_KIND"):
    open(os.path.join(out, "partial.txt"), "w").write("partial\n")
    if kind == "train":
        os.makedirs(os.path.join(out, "checkpoint"), exist_ok=True)
        open(os.path.join(out, "checkpoint", "state.json"), "w").write('{"step": 1}\n')
    os.kill(os.getpid(), signal.SIGKILL)
if env("RENDEZVOUS") and kind == env("RENDEZVOUS_KIND"):
    here = env("RENDEZVOUS")
    open(os.path.join(here, inst), "w").close()
    waited = 0.0
    while len(os.listdir(here)) < 2:
        if waited > 60:
            print("error: no other worker ran alongside this one", file=sys.stderr)
            sys.exit(2)
        time.sleep(0.01)
        waited += 0.01
if env("SLEEP"):
    time.sleep(float(env("SLEEP")))
event(event="progress", done=2, loss=0.25)
event(event="metric", name="loss", value=0.25)
open(os.path.join(out, kind + ".txt"), "w").write(inst + "\n")
if kind == "sample":
    open(os.path.join(out, "grid.png"), "w").write(inst + "\n")
if kind == env("BIG_KIND"):
    left, chunk = int(env("BIG_BYTES")), bytes(range(256)) * 4096
    with open(os.path.join(out, "big.bin"), "wb") as big:
        while left > 0:
            left -= big.write(chunk[:left])
"#;

pub struct Project {
    pub dir: tempfile::TempDir,
    pub worker: PathBuf,
    pub log: PathBuf,
}

impl Project {
    pub fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let worker = dir.path().join("worker.sh");
        std::fs::write(&worker, WORKER).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let log = dir.path().join("worker.log");
        // The user cache of these runs lives in the project (never the developer's own),
        // with a stand-in for the Inception weights, which the worker double never reads:
        // a metrics stage then has nothing to fetch.
        let weights = dir.path().join("xdg-cache/difflow/weights");
        std::fs::create_dir_all(&weights).unwrap();
        std::fs::write(weights.join("pt_inception-2015-12-05-6726825d.pth"), b"stand-in").unwrap();
        let p = Project { dir, worker, log };
        p.write(pipeline);
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self) -> PathBuf {
        self.path().join("p.diff")
    }

    pub fn write(&self, pipeline: &str) {
        std::fs::write(self.file(), pipeline).unwrap();
    }

    /// Run `difflow ARGS…` in the project folder with the worker double.
    pub fn difflow(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_difflow"));
        cmd.args(args)
            .current_dir(self.path())
            .env("DIFFLOW_WORKER", &self.worker)
            .env("LOG", &self.log)
            .env("XDG_CACHE_HOME", self.path().join("xdg-cache"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Out(cmd.output().unwrap())
    }

    pub fn run(&self, extra: &[&str]) -> Out {
        let mut args = vec!["run", "p.diff"];
        args.extend_from_slice(extra);
        self.difflow(&args, &[])
    }

    pub fn plan(&self) -> String {
        let out = self.difflow(&["plan", "p.diff"], &[]);
        assert_eq!(out.code(), 0, "{}", out.stderr());
        out.stdout()
    }

    /// The instances the worker double ran since the last call.
    pub fn take_worker_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines().map(str::to_string).collect()
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path().join(".difflow/cache")
    }

    /// Committed cache entries (folders with a manifest).
    pub fn entries(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(self.cache_dir()) else { return Vec::new() };
        let mut out: Vec<PathBuf> =
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.join("manifest.toml").is_file()).collect();
        out.sort();
        out
    }
}

pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

/// The state word of each instance in `plan` output.
pub fn states(plan: &str) -> Vec<(String, String)> {
    plan.lines()
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
        })
        .collect()
}

pub fn state_of(plan: &str, instance: &str) -> String {
    states(plan)
        .into_iter()
        .find(|(_, n)| n == instance)
        .map(|(s, _)| s)
        .unwrap_or_else(|| panic!("{instance} not in\n{plan}"))
}

pub fn line_of<'a>(plan: &'a str, instance: &str) -> &'a str {
    plan.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(instance))
        .unwrap_or_else(|| panic!("{instance} not in\n{plan}"))
}

/// The real `difflow-worker`, built beside `difflow` (`cargo test --release --workspace`
/// builds it; scripts/test.sh does).
pub fn real_worker() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_difflow"));
    let w = exe.with_file_name(format!("difflow-worker{}", std::env::consts::EXE_SUFFIX));
    assert!(w.is_file(), "{} is missing: build it with `cargo build --release -p difflow-engine`", w.display());
    w
}

/// `difflow ARGS` in `dir` with the real worker and the extra environment `env`:
/// (exit code, stdout, stderr).
pub fn difflow_real(dir: &Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_difflow"));
    cmd.args(args).current_dir(dir).env("DIFFLOW_WORKER", real_worker());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `difflow check FILE` in `dir`, without colour: (exit code, stdout, stderr).
pub fn difflow_check(dir: &Path, file: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_difflow"))
        .args(["check", file])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the difflow binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The instance names on a run's `done` lines, in order.
pub fn ran(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("done    "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

/// Each stage's key in the `difflow.lock` beside a pipeline in `dir`.
pub fn lock_keys(dir: &Path) -> Vec<(String, String)> {
    let lock: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("difflow.lock")).unwrap()).unwrap();
    let stages = lock["stages"].as_table().unwrap();
    stages.iter().map(|(name, entry)| (name.clone(), entry["key"].as_str().unwrap().to_string())).collect()
}

/// The repository's `.diff` files under `dirs` (relative to its root), sorted.
pub fn diff_files_under(dirs: &[&str]) -> Vec<PathBuf> {
    fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect(&p, out);
            } else if p.extension().is_some_and(|x| x == "diff") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in dirs {
        collect(&root.join(dir), &mut out);
    }
    out.sort();
    out
}

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The project's Python environment (`$DIFFLOW_VENV`, else `.venv`), where torch lives.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("DIFFLOW_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv"));
    assert!(venv.join("bin/python").is_file(), "{} has no python: run `. scripts/setup.sh` first", venv.display());
    venv
}

/// A project in `dir` whose pipelines may use the engine's tiny Python test net
/// (`nets/toy_net.py`, class `ToyNet`), trusted through a user config folder of its own
/// (`dir/xdg-config`): returns the environment that `difflow` runs with there.
pub fn trusted_python_project(dir: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    std::fs::create_dir_all(dir.join("nets")).unwrap();
    let fixture = repo().join("tests/check/python/toy_net.py");
    std::fs::copy(fixture, dir.join("nets/toy_net.py")).unwrap();
    if !dir.join("difflow.toml").exists() {
        std::fs::write(dir.join("difflow.toml"), "threads = 1\n").unwrap();
    }
    let env = vec![("XDG_CONFIG_HOME", dir.join("xdg-config").into_os_string())];
    let borrowed: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let (code, out, err) = difflow_real(dir, &["trust", "."], &borrowed);
    assert_eq!(code, 0, "difflow trust: {out}{err}");
    env
}

/// The toy points, schedule and a python `net` (the engine's `ToyNet`) of a
/// [`trusted_python_project`]: `pts`, `lin` and `net`, like [`TOY_SETUP`].
pub const PYTHON_TOY_SETUP: &str = r#"
dataset pts = toy { shape = "gaussians8", count = 256 }
schedule lin = linear { steps = 50 }
model net = python { file = "nets/toy_net.py", class = "ToyNet", args = { dim = 2, hidden = 16 } }
"#;
