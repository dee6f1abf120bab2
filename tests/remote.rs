//! Remote caches with the worker double: a folder remote and an HTTP one (nginx with
//! WebDAV PUT on 127.0.0.1). Project A runs and pushes; project B, in another folder with
//! an empty cache, pulls instead of computing; what a remote serves is checked.

mod cli_support;
mod remote_support;

use std::path::{Path, PathBuf};

use cli_support::{Project, TOY};
use remote_support::nginx::{file_url, walk, Nginx};
use remote_support::{
    flip_first_byte, lock_text, ok, project_with_remote, push_then_pull_computes_nothing,
    two_concurrent_pushes_both_succeed, Target,
};

/// A folder remote (its folder and URL) and project A, which ran and pushed to it.
fn pushed_to_a_folder() -> (tempfile::TempDir, String, Project) {
    let remote = tempfile::tempdir().unwrap();
    let url = file_url(remote.path());
    let a = project_with_remote(&url);
    ok(&a.run(&[]));
    ok(&a.difflow(&["push", "p.diff"], &[]));
    (remote, url, a)
}

/// The remote blob of the entry of kind `kind` (its only output).
fn blob_of(remote: &Path, kind: &str) -> PathBuf {
    for entry in std::fs::read_dir(remote.join("ac")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let m: toml::Value = toml::from_str(&text).unwrap();
        if m["kind"].as_str() == Some(kind) {
            let outputs = m["outputs"].as_table().unwrap();
            let digest = outputs.values().next().unwrap()["blake3"].as_str().unwrap();
            return remote.join("cas").join(digest);
        }
    }
    panic!("no {kind} entry on the remote");
}

#[test]
fn a_folder_remote_serves_a_colleague_who_then_computes_nothing() {
    let remote = tempfile::tempdir().unwrap();
    let (a, _b) = push_then_pull_computes_nothing(&Target::url(&file_url(remote.path())));
    let ls = ok(&a.difflow(&["cache", "ls", "--remote"], &[]));
    assert!(ls.contains("(5 entries)") && ls.contains("ddpm"), "{ls}");
    // gc never touches the remote.
    a.write("dataset pts = toy { shape = \"gaussians8\", count = 512 }\n");
    ok(&a.difflow(&["cache", "gc", "p.diff"], &[]));
    assert!(ok(&a.difflow(&["cache", "ls", "--remote"], &[])).contains("(5 entries)"));
}

#[test]
fn a_flipped_byte_in_a_remote_blob_is_refused_and_the_stage_recomputed() {
    let (remote, url, a) = pushed_to_a_folder();
    let blob = blob_of(remote.path(), "train");
    flip_first_byte(&blob);
    let b = project_with_remote(&url);
    let out = b.run(&["--pull"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(
        out.stderr().contains(&format!("{} (`train.txt`) does not match its digest: refused", file_url(&blob))),
        "{}",
        out.stderr()
    );
    assert_eq!(b.take_worker_log(), ["ddpm"], "only the refused entry is computed");
    assert!(out.stdout().contains("pulled 4 entries"), "{}", out.stdout());
    assert_eq!(lock_text(&a), lock_text(&b));
    // Nothing of the refused download is left beside the cache.
    let leftovers: Vec<_> = std::fs::read_dir(b.cache_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".pulling"))
        .collect();
    assert!(leftovers.is_empty());
    // `difflow pull` says which entry it refused, and fails.
    let c = project_with_remote(&url);
    let pulled = c.difflow(&["pull", "p.diff"], &[]);
    assert_eq!(pulled.code(), 2);
    assert!(
        pulled.stderr().contains("cannot pull 1 entry") && pulled.stderr().contains("`ddpm`"),
        "{}",
        pulled.stderr()
    );
}

#[test]
fn a_manifest_computed_from_other_parameters_is_refused() {
    let (remote, url, a) = pushed_to_a_folder();
    // B trains 30 steps; the remote's owner files A's 20-step run under B's key.
    let b = project_with_remote(&url);
    b.write(&TOY.replace("steps = 20", "steps = 30"));
    ok(&b.run(&["--target", "ddpm"]));
    let key_in_lock = |p: &Project| -> String {
        let lock: toml::Value = toml::from_str(&lock_text(p)).unwrap();
        lock["stages"]["ddpm"]["key"].as_str().unwrap().to_string()
    };
    let (a_key, b_key) = (key_in_lock(&a), key_in_lock(&b));
    assert_ne!(a_key, b_key);
    std::fs::remove_dir_all(b.cache_dir()).unwrap();
    b.take_worker_log();
    let a_manifest = std::fs::read_to_string(remote.path().join(format!("ac/{a_key}.toml"))).unwrap();
    std::fs::write(remote.path().join(format!("ac/{b_key}.toml")), a_manifest.replace(&a_key, &b_key)).unwrap();
    let out = b.run(&["--pull", "--target", "ddpm"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(out.stderr().contains("was computed from other inputs or parameters"), "{}", out.stderr());
    assert_eq!(b.take_worker_log(), ["ddpm"], "`pts` is pulled, `ddpm` computed");
}

#[test]
fn an_interrupted_push_leaves_nothing_a_pull_takes_as_complete() {
    let (remote, url, _a) = pushed_to_a_folder();
    // A push killed after the blobs and before the manifest: the blobs are there, the
    // manifest is not.
    let blob = blob_of(remote.path(), "train");
    let manifest = std::fs::read_dir(remote.path().join("ac"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("kind = \"train\""))
        .unwrap();
    std::fs::remove_file(&manifest).unwrap();
    assert!(blob.is_file());
    let b = project_with_remote(&url);
    let out = ok(&b.run(&["--pull"]));
    assert_eq!(b.take_worker_log(), ["ddpm"], "{out}");
    assert!(out.contains("pulled 4 entries"), "{out}");
    // A manifest whose blob is gone (a push of a remote that lost files) is no entry either.
    let c_remote = tempfile::tempdir().unwrap();
    let c = project_with_remote(&file_url(c_remote.path()));
    ok(&c.run(&[]));
    ok(&c.difflow(&["push", "p.diff"], &[]));
    std::fs::remove_file(blob_of(c_remote.path(), "train")).unwrap();
    let d = project_with_remote(&file_url(c_remote.path()));
    let out = d.run(&["--pull"]);
    assert_eq!(out.code(), 0);
    assert!(out.stderr().contains("is missing: the remote's entry is incomplete"), "{}", out.stderr());
    assert_eq!(d.take_worker_log(), ["ddpm"]);
    // A push puts the lost blob back; then the entry serves again.
    assert!(ok(&c.difflow(&["push", "p.diff"], &[])).contains("pushed 1 entry"));
    let e = project_with_remote(&file_url(c_remote.path()));
    ok(&e.run(&["--pull"]));
    assert!(e.take_worker_log().is_empty());
}

#[test]
fn two_concurrent_pushes_of_the_same_entries_both_succeed() {
    let remote = tempfile::tempdir().unwrap();
    two_concurrent_pushes_both_succeed(&Target::url(&file_url(remote.path())));
    // No temporary file of either writer is left.
    let stray: Vec<_> = walk(remote.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_remote_url_of_an_unsupported_kind_is_a_clear_error() {
    let p = project_with_remote("gs://bucket/prefix");
    let out = p.run(&[]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("remote `gs://bucket/prefix`: use file:///FOLDER"), "{}", out.stderr());
    let p = Project::new(TOY);
    let out = p.run(&["--pull"]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("needs a remote"), "{}", out.stderr());
    // `push` and `pull` say the same, as a usage error too; so is a stage name they do not know.
    let remote = tempfile::tempdir().unwrap();
    let with_remote = project_with_remote(&file_url(remote.path()));
    for command in ["push", "pull"] {
        let out = p.difflow(&[command, "p.diff"], &[]);
        assert_eq!(out.code(), 1, "{command}: {}", out.stderr());
        assert!(out.stderr().contains(&format!("`difflow {command}` needs a remote")), "{}", out.stderr());
        let out = with_remote.difflow(&[command, "p.diff", "nosuch"], &[]);
        assert_eq!(out.code(), 1, "{command}: {}", out.stderr());
        assert!(out.stderr().contains("nosuch"), "{}", out.stderr());
    }
}

/// In the server's access log, every manifest's PUT comes after the PUTs of all the
/// blobs it names: a push killed at any point leaves no manifest without its files.
fn assert_manifests_were_put_after_their_blobs(server: &Nginx) {
    let log = std::fs::read_to_string(server.dir.path().join("access.log")).unwrap();
    let puts: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("\"PUT /cache/").map(|(_, rest)| rest.split(' ').next().unwrap()))
        .collect();
    // Each manifest at its first PUT.
    let mut manifests: Vec<(usize, &str)> = Vec::new();
    for (n, put) in puts.iter().enumerate() {
        if put.starts_with("ac/") && !manifests.iter().any(|(_, m)| m == put) {
            manifests.push((n, put));
        }
    }
    assert_eq!(manifests.len(), 5, "{log}");
    for (at, manifest) in manifests {
        let text = std::fs::read_to_string(server.root.join("cache").join(manifest)).unwrap();
        let m: toml::Value = toml::from_str(&text).unwrap();
        for out in m["outputs"].as_table().unwrap().values() {
            let blob = format!("cas/{}", out["blake3"].as_str().unwrap());
            let put = puts.iter().position(|p| *p == blob).unwrap_or_else(|| panic!("{blob} was never put:\n{log}"));
            assert!(put < at, "{manifest} was put before its blob {blob}:\n{log}");
        }
    }
}

#[test]
fn an_http_remote_serves_a_colleague_and_refuses_a_flipped_byte() {
    let Some(server) = Nginx::start(None) else {
        eprintln!("SKIPPED: nginx is not installed (Debian package nginx-light); the HTTP remote is untested");
        return;
    };
    let url = format!("http://127.0.0.1:{}/cache", server.port);
    let (a, b) = push_then_pull_computes_nothing(&Target::url(&url));
    assert_manifests_were_put_after_their_blobs(&server);
    let ls = a.difflow(&["cache", "ls", "--remote"], &[]);
    assert_eq!(ls.code(), 2);
    assert!(ls.stderr().contains("cannot list its entries"), "{}", ls.stderr());
    assert!(ok(&a.difflow(&["cache", "ls", "--remote", "p.diff"], &[])).contains("(5 entries)"));
    drop(b);
    let blob = blob_of(&server.root.join("cache"), "train");
    flip_first_byte(&blob);
    let c = project_with_remote(&url);
    let out = c.run(&["--pull"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let blob_url = format!("{url}/cas/{}", blob.file_name().unwrap().to_string_lossy());
    assert!(out.stderr().contains(&format!("{blob_url} (`train.txt`) does not match its digest")), "{}", out.stderr());
    assert_eq!(c.take_worker_log(), ["ddpm"]);
    assert_eq!(lock_text(&a), lock_text(&c));
    // A server that is down: one warning, everything computed here.
    drop(server);
    let d = project_with_remote(&url);
    let out = d.run(&["--pull"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert_eq!(out.stderr().matches("cannot reach the remote").count(), 1, "{}", out.stderr());
    assert_eq!(d.take_worker_log().len(), 5);
}

#[test]
fn push_and_pull_settings_make_run_share_entries_without_flags() {
    let remote = tempfile::tempdir().unwrap();
    let url = file_url(remote.path());
    let a = Project::new(TOY);
    std::fs::write(a.path().join("difflow.toml"), format!("[remote]\nurl = \"{url}\"\npush = true\n")).unwrap();
    let out = ok(&a.run(&[]));
    assert!(out.contains(&format!("pushed  train ddpm to {url}")), "{out}");
    assert_eq!(std::fs::read_dir(remote.path().join("ac")).unwrap().count(), 5);
    let b = Project::new(TOY);
    std::fs::write(b.path().join("difflow.toml"), format!("[remote]\nurl = \"{url}\"\npull = true\n")).unwrap();
    let out = ok(&b.run(&[]));
    assert!(out.contains("pulled 5 entries"), "{out}");
    assert!(b.take_worker_log().is_empty());
    // A misspelt setting is an error of every command, not a silent local run.
    std::fs::write(b.path().join("difflow.toml"), format!("[remote]\nurl = \"{url}\"\npul = true\n")).unwrap();
    let out = b.run(&[]);
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("pul"), "{}", out.stderr());
}

#[test]
fn a_push_that_fails_on_a_blob_writes_no_manifest() {
    let remote = tempfile::tempdir().unwrap();
    let a = project_with_remote(&file_url(remote.path()));
    ok(&a.run(&[]));
    // The train entry's only file, by its digest, from A's own cache.
    let (key, digest) = a
        .entries()
        .into_iter()
        .find_map(|dir| {
            let m: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
            (m["kind"].as_str() == Some("train")).then(|| {
                let d =
                    m["outputs"].as_table().unwrap().values().next().unwrap()["blake3"].as_str().unwrap().to_string();
                (m["key"].as_str().unwrap().to_string(), d)
            })
        })
        .unwrap();
    // A folder where the blob goes makes its upload fail, as a full disk would.
    std::fs::create_dir_all(remote.path().join("cas").join(&digest)).unwrap();
    let out = a.difflow(&["push", "p.diff"], &[]);
    assert_eq!(out.code(), 2, "{}", out.stdout());
    assert!(out.stderr().contains("cannot push 1 entry") && out.stderr().contains("`ddpm`"), "{}", out.stderr());
    assert!(!remote.path().join(format!("ac/{key}.toml")).exists(), "a manifest without its files was written");
    assert!(out.stdout().contains("pushed 4 entries"), "{}", out.stdout());
}

#[test]
fn an_http_remote_with_a_password_gets_it_from_the_environment_and_never_prints_it() {
    let Some(server) = Nginx::start(Some(("alice", "s3cret-pw"))) else {
        eprintln!("SKIPPED: nginx is not installed (Debian package nginx-light); the HTTP remote is untested");
        return;
    };
    let url = format!("http://alice@127.0.0.1:{}/cache", server.port);
    let a = project_with_remote(&url);
    ok(&a.run(&[]));
    let refused = a.difflow(&["push", "p.diff"], &[]);
    assert_eq!(refused.code(), 2);
    assert!(refused.stderr().contains("401"), "{}", refused.stderr());
    let env = [("DIFFLOW_REMOTE_PASSWORD", "s3cret-pw")];
    assert!(ok(&a.difflow(&["push", "p.diff"], &env)).contains("pushed 5 entries"));
    let b = project_with_remote(&url);
    let pulled = b.difflow(&["run", "p.diff", "--pull"], &env);
    assert!(ok(&pulled).contains("pulled 5 entries"));
    assert!(b.take_worker_log().is_empty());
    // A password in the URL works too and is shown as ***.
    let with_password = format!("http://alice:s3cret-pw@127.0.0.1:{}/cache", server.port);
    let c = project_with_remote(&with_password);
    let out = c.difflow(&["pull", "p.diff"], &[]);
    assert!(ok(&out).contains("alice:***@"), "{}", out.stdout());
    for text in [refused.stdout(), refused.stderr(), pulled.stdout(), pulled.stderr(), out.stdout(), out.stderr()] {
        assert!(!text.contains("s3cret-pw"), "the password was printed:\n{text}");
    }
    drop(server);
    let d = project_with_remote(&with_password);
    let out = d.difflow(&["pull", "p.diff"], &[]);
    assert_eq!(out.code(), 2);
    assert!(!out.stderr().contains("s3cret-pw") && out.stderr().contains("alice:***@"), "{}", out.stderr());
    assert!(out.stderr().contains("cannot reach the remote"), "{}", out.stderr());
}

#[test]
fn a_short_blob_or_a_torn_manifest_on_the_remote_is_sent_again() {
    // What a server that writes an upload as it arrives (s3rver) keeps of a killed push:
    // the start of a blob, an empty manifest. The next push must not take them as there.
    let (remote, url, a) = pushed_to_a_folder();
    let blob = blob_of(remote.path(), "train");
    let whole = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &whole[..whole.len() / 2]).unwrap();
    let manifest = std::fs::read_dir(remote.path().join("ac"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("kind = \"plot\""))
        .unwrap();
    std::fs::write(&manifest, "").unwrap();
    let pushed = ok(&a.difflow(&["push", "p.diff"], &[]));
    assert!(pushed.contains("pushed 2 entries") && pushed.contains("3 already there"), "{pushed}");
    assert_eq!(std::fs::read(&blob).unwrap(), whole);
    let b = project_with_remote(&url);
    let out = ok(&b.run(&["--pull"]));
    assert!(b.take_worker_log().is_empty(), "{out}");
    assert_eq!(lock_text(&a), lock_text(&b));
}
