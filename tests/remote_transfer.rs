//! Transfers that are killed, raced and left alone: a push killed with SIGKILL while its
//! manifests are held back by the server, a pull killed while one file is held back, two
//! pushes of the same entries at once, and `cache gc` beside a remote.

mod cli_support;
mod remote_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::Project;
use remote_support::gate::Gate;
use remote_support::nginx::{file_url, walk, Nginx};
use remote_support::{lock_text, ok, project_with_remote};

/// `difflow ARGS` in the project, in the background.
fn spawn(p: &Project, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_difflow"))
        .args(args)
        .current_dir(p.path())
        .env("DIFFLOW_WORKER", &p.worker)
        .env("LOG", &p.log)
        .env("XDG_CACHE_HOME", p.path().join("xdg-cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until `ready`, failing if `child` ends first or after a minute (a bound against
/// hanging, not a timing); then kill it with SIGKILL.
fn kill_when(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("difflow ended ({status}) before {what}:\n{err}");
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The manifests in a remote folder, by key.
fn remote_manifests(objects: &Path) -> BTreeMap<String, toml::Value> {
    let Ok(rd) = std::fs::read_dir(objects.join("ac")) else { return BTreeMap::new() };
    rd.filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".toml")?.to_string();
            Some((key, toml::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap()))
        })
        .collect()
}

fn count(log: &[String], request: &str) -> usize {
    log.iter().filter(|r| *r == request).count()
}

#[test]
fn a_push_killed_with_sigkill_leaves_no_entry_a_pull_takes_and_the_next_push_finishes_it() {
    let gate = Gate::start();
    let a = project_with_remote(&gate.url());
    ok(&a.run(&[]));
    // The first manifest goes through; the others are held, their blobs already sent.
    gate.hold("PUT ac/", 1);
    let mut push = spawn(&a, &["push", "p.diff"]);
    kill_when(&mut push, "a manifest was held", || gate.held() >= 1);
    let on_remote = remote_manifests(&gate.objects());
    assert_eq!(on_remote.len(), 1, "{:?}", gate.log());
    // Every manifest there has all its blobs; a pull takes exactly that entry.
    for m in on_remote.values() {
        for out in m["outputs"].as_table().unwrap().values() {
            assert!(gate.objects().join("cas").join(out["blake3"].as_str().unwrap()).is_file());
        }
    }
    let b = project_with_remote(&gate.url());
    let pulled = ok(&b.difflow(&["pull", "p.diff"], &[]));
    assert!(pulled.contains("pulled 1 entry") && pulled.contains("4 not on the remote"), "{pulled}");
    assert_eq!(b.entries().len(), 1);

    gate.release();
    let before = gate.log();
    let pushed = ok(&a.difflow(&["push", "p.diff"], &[]));
    assert!(pushed.contains("pushed 4 entries") && pushed.contains("1 already there"), "{pushed}");
    // The blobs stored before the kill are not sent again.
    let log = gate.log();
    for blob in before.iter().filter(|r| r.starts_with("PUT cas/")) {
        assert_eq!(count(&log, blob), count(&before, blob), "{blob} was sent again:\n{log:?}");
    }
    let c = project_with_remote(&gate.url());
    let out = ok(&c.run(&["--pull"]));
    assert!(c.take_worker_log().is_empty(), "{out}");
    assert_eq!(lock_text(&a), lock_text(&c));
}

#[test]
fn a_push_sends_four_files_at_once_and_no_more() {
    let gate = Gate::start();
    let a = project_with_remote(&gate.url());
    ok(&a.run(&[]));
    // Seven distinct blobs in five entries; none is answered while held.
    gate.hold("PUT cas/", 0);
    let mut push = spawn(&a, &["push", "p.diff"]);
    kill_when(&mut push, "four uploads in flight", || gate.held() >= 4);
    assert_eq!(gate.held(), 4, "more than four requests at once");
    gate.release();
}

#[test]
fn a_pull_killed_with_sigkill_continues_with_the_files_it_had_verified() {
    let gate = Gate::start();
    let a = project_with_remote(&gate.url());
    // The sample stages write two different files, so that one can be held back alone.
    let worker = std::fs::read_to_string(&a.worker).unwrap();
    let two_files =
        worker.replace(r#""grid.png"), "w").write(inst + "\n")"#, r#""grid.png"), "w").write(inst + " grid\n")"#);
    assert_ne!(worker, two_files, "the worker double changed: update this test");
    std::fs::write(&a.worker, two_files).unwrap();
    ok(&a.run(&[]));
    ok(&a.difflow(&["push", "p.diff"], &[]));
    let (key, m) = remote_manifests(&gate.objects())
        .into_iter()
        .find(|(_, m)| m["instances"].as_array().unwrap().iter().any(|i| i.as_str() == Some("gen[steps=5]")))
        .unwrap();
    let digest = |file: &str| m["outputs"][file]["blake3"].as_str().unwrap().to_string();
    let (text, grid) = (digest("sample.txt"), digest("grid.png"));
    assert_ne!(text, grid);

    let b = project_with_remote(&gate.url());
    gate.hold(&format!("GET cas/{grid}"), 0);
    let mut pull = spawn(&b, &["pull", "p.diff"]);
    let verified = b.cache_dir().join(format!("{key}.pulling/sample.txt"));
    kill_when(&mut pull, "the other file was downloaded", || {
        gate.held() >= 1 && std::fs::read(&verified).is_ok_and(|bytes| bytes == b"gen[steps=5]\n")
    });
    assert!(!b.cache_dir().join(&key).exists(), "the entry counts before its files are all there");
    gate.release();
    let out = ok(&b.difflow(&["pull", "p.diff"], &[]));
    assert!(
        out.contains("pulled  sample gen[steps=5] (1 file,") && out.contains("1 file kept from an interrupted pull"),
        "{out}"
    );
    assert_eq!(count(&gate.log(), &format!("GET cas/{text}")), 1, "sample.txt was downloaded again");
    let run = ok(&b.run(&[]));
    assert!(run.contains("nothing to do: all 5 stages cached"), "{run}");
    assert_eq!(lock_text(&a), lock_text(&b));
}

#[test]
fn concurrent_pushes_from_one_cache_and_from_another_all_succeed_and_a_pull_verifies() {
    let Some(server) = Nginx::start(None) else {
        eprintln!("SKIPPED: nginx is not installed (Debian package nginx-light); the HTTP remote is untested");
        return;
    };
    let url = format!("http://127.0.0.1:{}/cache", server.port);
    let (a1, a2) = (project_with_remote(&url), project_with_remote(&url));
    ok(&a1.run(&[]));
    ok(&a2.run(&[]));
    // Two processes on one cache (they share its entry locks) and one on another.
    let pushes = [spawn(&a1, &["push", "p.diff"]), spawn(&a1, &["push", "p.diff"]), spawn(&a2, &["push", "p.diff"])];
    let mut pushed = 0;
    for child in pushes {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        pushed += stdout.lines().filter(|l| l.starts_with("pushed  ")).count();
    }
    assert!((5..=15).contains(&pushed), "{pushed}");
    let b = project_with_remote(&url);
    let out = ok(&b.run(&["--pull"]));
    assert!(out.contains("pulled 5 entries"), "{out}");
    assert!(b.take_worker_log().is_empty());
    assert_eq!(lock_text(&a1), lock_text(&b));
    assert_eq!(lock_text(&a2), lock_text(&b));
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

#[test]
fn cache_gc_removes_local_entries_and_never_touches_the_remote() {
    let folder = tempfile::tempdir().unwrap();
    let server = Nginx::start(None);
    let mut urls = vec![file_url(folder.path())];
    urls.extend(server.iter().map(|s| format!("http://127.0.0.1:{}/cache", s.port)));
    for url in urls {
        let a = project_with_remote(&url);
        ok(&a.run(&[]));
        ok(&a.difflow(&["push", "p.diff"], &[]));
        let remote_dir = match &server {
            Some(s) if url.starts_with("http") => s.root.clone(),
            _ => folder.path().to_path_buf(),
        };
        let requests = || server.as_ref().map(|s| std::fs::read_to_string(s.dir.path().join("access.log")).unwrap());
        // nginx logs a request after answering it: wait for the push's last lines.
        let deadline = Instant::now() + Duration::from_secs(20);
        while url.starts_with("http") && requests().is_some_and(|log| log.matches("\"PUT /cache/ac/").count() < 5) {
            assert!(Instant::now() < deadline, "nginx did not log the push's five manifests");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (files, log) = (snapshot(&remote_dir), requests());
        // A smaller pipeline: gc removes the entries it no longer names.
        a.write("dataset pts = toy { shape = \"gaussians8\", count = 512 }\n");
        ok(&a.difflow(&["cache", "gc", "p.diff"], &[]));
        assert_eq!(a.entries().len(), 1, "{url}: gc removed nothing here");
        assert_eq!(snapshot(&remote_dir), files, "{url}: gc changed the remote");
        assert_eq!(requests(), log, "{url}: gc sent requests to the remote");
    }
}
