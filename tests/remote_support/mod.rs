//! The remote-cache scenarios that every backend's tests run (tests/remote.rs for folder
//! and HTTP remotes, tests/remote_s3.rs for S3): a [`Target`] says how to reach one
//! remote, `[remote]` of difflow.toml and the environment its commands need.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::cli_support::{Out, Project, TOY};

pub mod gate;
pub mod nginx;
pub mod s3rver;

pub fn ok(out: &Out) -> String {
    assert_eq!(out.code(), 0, "stdout:\n{}\nstderr:\n{}", out.stdout(), out.stderr());
    out.stdout()
}

/// One remote as the projects of a test reach it.
pub struct Target {
    /// The body of `[remote]` in difflow.toml.
    pub table: String,
    pub env: Vec<(String, String)>,
}

impl Target {
    /// A remote that needs only its URL.
    pub fn url(url: &str) -> Target {
        Target { table: format!("url = \"{url}\"\n"), env: Vec::new() }
    }

    /// A project on the toy pipeline whose `difflow.toml` names this remote.
    pub fn project(&self) -> Project {
        let p = Project::new(TOY);
        std::fs::write(p.path().join("difflow.toml"), format!("[remote]\n{}", self.table)).unwrap();
        p
    }

    pub fn difflow(&self, p: &Project, args: &[&str]) -> Out {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        p.difflow(args, &env)
    }

    pub fn run(&self, p: &Project, extra: &[&str]) -> Out {
        let mut args = vec!["run", "p.diff"];
        args.extend_from_slice(extra);
        self.difflow(p, &args)
    }

    /// `difflow push p.diff` in `p`, started and not waited for.
    pub fn spawn_push(&self, p: &Project) -> Child {
        Command::new(env!("CARGO_BIN_EXE_difflow"))
            .args(["push", "p.diff"])
            .current_dir(p.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// A project on the toy pipeline whose `difflow.toml` names the remote `url`.
pub fn project_with_remote(url: &str) -> Project {
    Target::url(url).project()
}

pub fn lock_text(p: &Project) -> String {
    std::fs::read_to_string(p.path().join("difflow.lock")).unwrap()
}

pub fn flip_first_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

/// A computes and pushes everything; a fresh B then pulls it all and computes nothing,
/// with the same lock digests.
pub fn push_then_pull_computes_nothing(target: &Target) -> (Project, Project) {
    let a = target.project();
    assert!(ok(&target.run(&a, &[])).contains("ran 5 stages"));
    let pushed = ok(&target.difflow(&a, &["push", "p.diff"]));
    assert!(pushed.contains("pushed 5 entries"), "{pushed}");
    assert!(pushed.contains("pushed  train ddpm (1 file,"), "{pushed}");
    // Idempotent: a second push uploads nothing.
    assert!(ok(&target.difflow(&a, &["push", "p.diff"])).contains("pushed 0 entries"));

    let b = target.project();
    let out = ok(&target.run(&b, &["--pull"]));
    assert!(b.take_worker_log().is_empty(), "B computed something:\n{out}");
    for line in ["pulled  train ddpm", "pulled  sample gen[steps=5]", "pulled  plot pic", "pulled 5 entries from"] {
        assert!(out.contains(line), "no `{line}` in\n{out}");
    }
    assert!(out.contains("nothing to do: all 5 stages cached"), "{out}");
    assert_eq!(lock_text(&a), lock_text(&b));
    ok(&target.difflow(&b, &["compare", "difflow.lock", a.path().join("difflow.lock").to_str().unwrap()]));
    (a, b)
}

/// Two projects compute the same entries and push them at the same time: both pushes
/// succeed, and a third project pulls everything. Returns the first pusher.
pub fn two_concurrent_pushes_both_succeed(target: &Target) -> Project {
    let (a1, a2) = (target.project(), target.project());
    ok(&target.run(&a1, &[]));
    ok(&target.run(&a2, &[]));
    let (c1, c2) = (target.spawn_push(&a1), target.spawn_push(&a2));
    for child in [c1, c2] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let b = target.project();
    ok(&target.run(&b, &["--pull"]));
    assert!(b.take_worker_log().is_empty());
    assert_eq!(lock_text(&a1), lock_text(&b));
    a1
}
