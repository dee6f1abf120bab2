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

/// The worker double, in Python so that it reads the job file as JSON: prints progress
/// and a metric, writes `<kind>.txt` (with the instance name) into out_dir, and `grid.png`
/// for a sample stage. With `FAIL_KIND=<kind>` it fails like a stage error (exit 2); with
/// `CRASH_KIND=<kind>` it writes a partial file (and for `train` a checkpoint) and dies by
/// SIGKILL; with `SLEEP=<s>` it
/// sleeps before finishing; with `RENDEZVOUS=<dir>` and `RENDEZVOUS_KIND=<kind>` it
/// waits until two workers of that kind are running at once (and fails after 60 s
/// alone, so a run that never overlaps them fails instead of hanging).
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
        cmd.args(args).current_dir(self.path()).env("DIFFLOW_WORKER", &self.worker).env("LOG", &self.log);
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
