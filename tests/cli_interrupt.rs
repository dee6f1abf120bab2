//! The lifetime of local workers, with the real worker: a `difflow` killed by SIGKILL takes
//! its worker down (the worker gets SIGTERM through PR_SET_PDEATHSIG, checkpoints and
//! exits), and Ctrl-C (SIGINT) stops training at a step boundary, keeps a checkpoint, says
//! so, exits 130, and the next run resumes from it.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_support::{real_worker, toy_train, Project, TOY_SETUP};

/// `difflow run p.diff` in the background, its stderr lines on a channel.
fn spawn_run(dir: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_difflow"))
        .args(["run", "p.diff"])
        .current_dir(dir)
        .env("DIFFLOW_WORKER", real_worker())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Read lines until one contains `what`; every line read is returned.
fn wait_for_line(rx: &mpsc::Receiver<String>, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let hit = line.contains(what);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("no line with `{what}` in:\n{}", seen.join("\n")),
        }
    }
}

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie has ended; only its entry remains until it is reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

fn project(steps: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.diff"), format!("{TOY_SETUP}{}", toy_train(&steps.to_string(), "1e-3", "")))
        .unwrap();
    dir
}

fn checkpoint_exists(dir: &Path) -> bool {
    let cache = dir.join(".difflow/cache");
    std::fs::read_dir(cache)
        .is_ok_and(|rd| rd.filter_map(Result::ok).any(|e| e.path().join("checkpoint/state.json").is_file()))
}

#[test]
fn a_difflow_killed_with_sigkill_takes_its_training_worker_down() {
    let dir = project(1_000_000);
    let (mut child, rx) = spawn_run(dir.path());
    wait_for_line(&rx, "training (1000000)");
    let workers = children(child.id());
    assert_eq!(workers.len(), 1, "one worker: {workers:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    while alive(workers[0]) && killed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(workers[0]), "the worker {} outlived its difflow by 5 s", workers[0]);
    // It went down through SIGTERM: a checkpoint for the next run.
    assert!(checkpoint_exists(dir.path()));
}

#[test]
fn ctrl_c_keeps_a_checkpoint_says_how_to_resume_exits_130_and_the_rerun_resumes() {
    let dir = project(1500);
    let (child, rx) = spawn_run(dir.path());
    wait_for_line(&rx, "training (1500)");
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let rest: Vec<String> = rx.iter().collect();
    let stderr = rest.join("\n");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: 1 stage finished and cached before the stop"), "{stderr}");
    assert!(stderr.contains("train ddpm: stopped at step "), "{stderr}");
    assert!(stderr.contains("run `difflow run p.diff` again to continue from there"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped train ddpm"));
    assert!(checkpoint_exists(dir.path()));

    let rerun = Command::new(env!("CARGO_BIN_EXE_difflow"))
        .args(["run", "p.diff"])
        .current_dir(dir.path())
        .env("DIFFLOW_WORKER", real_worker())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert_eq!(rerun.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming from the checkpoint at step"), "{stderr}");
    assert!(String::from_utf8_lossy(&rerun.stdout).contains("ran 1 stage, 1 cached"));
}

/// Names in `dir` ending with `suffix`.
fn named(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// `difflow run --force` killed outright while its worker runs leaves an empty staging
/// folder and a job file beside the complete entry; the next `run` removes them, and so
/// does `cache gc`.
#[test]
fn a_killed_forced_runs_leftovers_are_removed_by_the_next_run_and_by_cache_gc() {
    let p = Project::new("dataset pts = toy { shape = \"moons\", count = 16 }\n");
    assert_eq!(p.run(&[]).code(), 0);
    let cache = p.cache_dir();
    for cleaner in [&["run", "p.diff"][..], &["cache", "gc", "p.diff"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_difflow"))
            .args(["run", "p.diff", "--force", "pts"])
            .current_dir(p.path())
            .env("DIFFLOW_WORKER", &p.worker)
            .env("XDG_CACHE_HOME", p.path().join("xdg-cache"))
            .env("SLEEP", "60")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while named(&cache, ".job.json").is_empty() {
            assert!(start.elapsed() < Duration::from_secs(60), "the forced run never started its worker");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(named(&cache, ".staging").len(), 1, "the kill left a staging folder");
        let out = p.difflow(cleaner, &[]);
        assert_eq!(out.code(), 0, "{}", out.stderr());
        let left = [named(&cache, ".staging"), named(&cache, ".job.json")].concat();
        assert!(left.is_empty(), "{cleaner:?} left {left:?}");
        assert_eq!(p.entries().len(), 1, "the entry itself stays");
    }
}
