//! The two set-ups on a machine without root, a browser, an editor or Node.js: the PATH
//! is a folder of links to every command of the real PATH except `chromium`, `nvim`,
//! `npm`, `node` (and their other names), with `apt-get`, `apt` and `sudo` replaced by
//! stubs that record their call and fail, and `id -u` answering 1000 (a user).
//!
//! - `scripts/quickstart.sh` (the user's set-up, then `pipelines/quickstart.diff`) calls
//!   none of the stubs and runs the quickstart pipeline to its plot. It reuses the venv
//!   (`DIFFLOW_VENV`, else `.venv`) and the release build, as on a second run: its
//!   `cargo build` has nothing to do after `cargo test --release --workspace`'s.
//! - `scripts/setup_tests.sh` (the tests' own tools) asks for root through `sudo`, which
//!   fails here, names each package it could not install with the tests that need it,
//!   and exits 0.

mod cli_support;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{ran, repo, venv};

/// Commands the user's set-up must not need: absent from the fenced PATH.
const HIDDEN: &[&str] =
    &["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "nvim", "npm", "npx", "node", "nodejs"];
/// Commands that would install system packages: stubs that record the call and fail.
const RECORDED: &[&str] = &["apt-get", "apt", "sudo"];
/// A hang (a lock that is never released, a prompt) fails the test instead of blocking it.
const DEADLINE: Duration = Duration::from_secs(900);

/// The fenced PATH (`bin/`) and the file the stubs append their calls to.
struct Fence {
    dir: tempfile::TempDir,
}

impl Fence {
    fn new() -> Fence {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let real_path = std::env::var_os("PATH").unwrap_or_default();
        let mut real_id = None;
        for folder in std::env::split_paths(&real_path) {
            let Ok(entries) = std::fs::read_dir(&folder) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(text) = name.to_str() else { continue };
                let target = entry.path();
                if !is_executable(&target) || bin.join(&name).exists() || HIDDEN.contains(&text) {
                    continue;
                }
                if text == "id" {
                    real_id.get_or_insert(target);
                } else if !RECORDED.contains(&text) {
                    symlink(&target, bin.join(&name)).unwrap();
                }
            }
        }
        let calls = dir.path().join("calls");
        for name in RECORDED {
            script(&bin.join(name), &format!("echo \"{name} $*\" >> '{}'\nexit 1", calls.display()));
        }
        let real_id = real_id.expect("`id` on PATH");
        script(
            &bin.join("id"),
            &format!("[ \"$*\" = -u ] && {{ echo 1000; exit 0; }}\nexec '{}' \"$@\"", real_id.display()),
        );
        Fence { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// The stubs' calls, one a line ("sudo apt-get update -qq").
    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }

    /// `bash ARGS` in the repository with the fenced PATH, under [`DEADLINE`]:
    /// (success, stdout, stderr).
    fn bash(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.dir.path().join("stdout");
        let err = self.dir.path().join("stderr");
        let mut command = Command::new("bash");
        // The variables `cargo test` sets for this test describe this crate, and some build
        // scripts rerun when they change (`rerun-if-env-changed=CARGO_MANIFEST_DIR`): the
        // set-up's `cargo build` must see the environment of a shell, or it rebuilds.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(set_by_cargo_test) {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(args)
            .current_dir(repo())
            .env("PATH", self.bin())
            .env("DIFFLOW_VENV", venv())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > DEADLINE {
                // The whole group: bash, cargo, difflow and its workers.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                child.wait().unwrap();
                panic!("bash {args:?} still ran after {DEADLINE:?}:\n{}", std::fs::read_to_string(&err).unwrap());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        (status.success(), read(&out), read(&err))
    }
}

fn set_by_cargo_test(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
    ];
    name == "CARGO"
        || name == "OUT_DIR"
        || name == "CARGO_RUSTC_CURRENT_DIR"
        || PREFIXES.iter().any(|p| name.starts_with(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_quickstart_needs_no_root_browser_editor_or_node_and_runs_its_pipeline() {
    let fence = Fence::new();
    for hidden in HIDDEN {
        assert!(!fence.bin().join(hidden).exists(), "{hidden} is on the fenced PATH");
    }
    // A copy of the pipeline in a fresh folder: its cache starts empty, every stage runs.
    let work = tempfile::tempdir().unwrap();
    let pipeline = work.path().join("quickstart.diff");
    std::fs::copy(repo().join("pipelines/quickstart.diff"), &pipeline).unwrap();
    let (ok, out, err) = fence.bash(&["scripts/quickstart.sh", pipeline.to_str().unwrap(), "--device", "cpu"]);
    assert_eq!(fence.calls(), "", "the user's set-up called a stub:\n{err}");
    assert!(ok, "{out}\n{err}");
    assert_eq!(ran(&out), ["points", "fit", "ancestral", "fast", "look"], "{out}\n{err}");
    let plot = out.lines().skip_while(|l| *l != "open:").nth(1).map(|l| PathBuf::from(l.trim()));
    assert!(plot.as_ref().is_some_and(|p| p.ends_with("plot.png") && p.is_file()), "{out}");
}

#[test]
fn the_test_set_up_names_what_it_cannot_install_and_carries_on() {
    let fence = Fence::new();
    let (ok, out, err) = fence.bash(&["scripts/setup_tests.sh"]);
    assert!(ok, "{out}\n{err}");
    // Not root (`id -u` is 1000): one try through sudo, which fails here.
    assert_eq!(fence.calls(), "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq\n", "{err}");
    for (package, test) in [
        ("chromium", "tests/study.rs"),
        ("neovim", "tests/lsp_neovim.rs"),
        ("nodejs", "tests/editor_grammar.rs"),
        ("npm", "tests/editor_grammar.rs"),
    ] {
        assert!(err.contains(&format!("warning: Debian's {package} is missing: {test}")), "{package}:\n{err}");
    }
    assert!(err.contains("the test set-up is incomplete"), "{err}");
}
