//! Fetching from a hostile server on 127.0.0.1: a redirect to `file://`, an endless body,
//! a gzip-encoded reply, a slow drip, a resume answered from the wrong byte, and Hub
//! names that climb out of the user cache. Each must fail cleanly and boundedly: a clear
//! error, no panic, nothing beyond the file's limit on disk, no partial download left
//! where it cannot be resumed, nothing written outside the cache.

mod cli_support;
mod fetch_support;
mod idx_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cli_support::Project;
use difflow::fetch::{fetch_file, FetchOptions, Source};
use fetch_support::{part_files, quiet_options, serve, source, Route};
use idx_support::gzip;

/// The largest resident set of any child process waited for so far (KiB).
fn children_peak_kib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss
}

/// Every file below `dir` with its size.
fn files_below(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

fn fetch(s: &Source, dir: &Path, opts: &FetchOptions) -> Result<(), String> {
    fetch_file(s, &dir.join("dest/file"), opts).map(|_| ())
}

#[test]
fn a_redirect_to_a_file_url_is_refused_and_http_redirects_are_followed() {
    let body = b"the file".to_vec();
    let server = serve(vec![
        ("/passwd", Route::Redirect("file:///etc/passwd".into())),
        ("/moved", Route::Redirect("/f".into())),
        ("/loop", Route::Redirect("/loop".into())),
        ("/f", Route::File(body.clone())),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let opts = quiet_options(dir.path());
    let err = fetch(&source("w", format!("{}/passwd", server.base), &body), dir.path(), &opts).unwrap_err();
    assert!(err.contains("file:///etc/passwd") && err.contains("only http:// and https://"), "{err}");
    let err = fetch(&source("w", format!("{}/loop", server.base), &body), dir.path(), &opts).unwrap_err();
    assert!(err.contains("more than 5 redirects"), "{err}");
    fetch(&source("w", format!("{}/moved", server.base), &body), dir.path(), &opts).unwrap();
    assert_eq!(std::fs::read(dir.path().join("dest/file")).unwrap(), body);
    // A source URL of another scheme is refused the same way, before any request.
    let err = fetch_file(&source("v", "file:///etc/passwd".into(), &body), &dir.path().join("v"), &opts).unwrap_err();
    assert!(err.contains("only http:// and https://"), "{err}");
}

#[test]
fn an_endless_body_stops_at_the_limit_and_is_deleted() {
    let server = serve(vec![("/endless", Route::Endless), ("/big", Route::File(vec![7; 5000]))]);
    let dir = tempfile::tempdir().unwrap();
    let opts = quiet_options(dir.path());
    let mut s = source("d", format!("{}/endless", server.base), b"unreachable");
    s.cap = 1 << 20;
    let err = fetch(&s, dir.path(), &opts).unwrap_err();
    assert!(err.contains("sent more than the 1048576 bytes"), "{err}");
    assert!(files_below(dir.path()).iter().all(|(p, _)| p.extension().is_some_and(|e| e == "lock")));
    // A pinned size is the limit, and the environment's cap does not raise it.
    s.size = Some(1000);
    let err = fetch(&s, dir.path(), &FetchOptions { max_bytes: Some(1 << 30), ..opts.clone() }).unwrap_err();
    assert!(err.contains("more than the 1000 bytes"), "{err}");
    // A length announced beyond the limit is refused before anything is written.
    let mut big = source("b", format!("{}/big", server.base), &[7; 5000]);
    big.cap = 4000;
    let err = fetch(&big, dir.path(), &opts).unwrap_err();
    assert!(err.contains("announces 5000 bytes, more than the 4000 bytes"), "{err}");
    assert!(part_files(dir.path()).is_empty());
}

#[test]
fn a_gzip_encoded_reply_is_refused_not_inflated() {
    // Pinned to the inflated bytes: a client that decoded the reply would accept it.
    let inflated = vec![0u8; 8 << 20];
    let sent = gzip(&inflated);
    let server = serve(vec![("/z", Route::Gzipped(sent.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let s = source("z", format!("{}/z", server.base), &inflated);
    let err = fetch(&s, dir.path(), &quiet_options(dir.path())).unwrap_err();
    assert!(err.contains("Content-Encoding: gzip") && err.contains("deleted"), "{err}");
    let written: u64 = files_below(dir.path()).iter().map(|(_, n)| n).sum();
    assert!(written <= sent.len() as u64, "{written} bytes on disk");
    assert!(part_files(dir.path()).is_empty());
}

#[test]
fn a_slow_drip_fails_at_the_minimum_rate_and_at_the_deadline() {
    let body = vec![1u8; 300];
    let server = serve(vec![("/drip", Route::Drip(body.clone(), Duration::from_millis(100)))]);
    let dir = tempfile::tempdir().unwrap();
    let s = source("drip", format!("{}/drip", server.base), &body);
    let mut opts = quiet_options(dir.path());
    (opts.min_rate, opts.rate_window) = (1000, Duration::from_millis(500));
    let err = fetch(&s, dir.path(), &opts).unwrap_err();
    assert!(err.contains("too slow") && err.contains("DIFFLOW_FETCH_MIN_RATE"), "{err}");
    // What arrived is kept for a resume, and it is small.
    let parts = files_below(&opts.partial_dir);
    assert!(parts.iter().any(|(p, n)| p.extension().is_some_and(|e| e == "part") && *n < 300), "{parts:?}");

    std::fs::remove_dir_all(&opts.partial_dir).unwrap();
    (opts.min_rate, opts.deadline) = (0, Duration::from_millis(800));
    let err = fetch(&s, dir.path(), &opts).unwrap_err();
    assert!(err.contains("DIFFLOW_FETCH_DEADLINE"), "{err}");
    assert!(!dir.path().join("dest/file").exists());
}

#[test]
fn a_resume_answered_from_another_byte_is_not_appended() {
    let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let server = serve(vec![("/r", Route::WrongRange(body.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    // Unpinned, as a Hub file is: no checksum would catch a file appended wrongly.
    let mut s = source("r", format!("{}/r", server.base), &body);
    s.sha256 = String::new();
    let opts = quiet_options(dir.path());
    std::fs::create_dir_all(&opts.partial_dir).unwrap();
    std::fs::write(opts.partial_dir.join("-r.part"), &body[..100]).unwrap();
    let err = fetch(&s, dir.path(), &opts).unwrap_err();
    assert!(err.contains("asked for the bytes from 100 on") && err.contains("bytes 0-999/1000"), "{err}");
    assert!(!dir.path().join("dest/file").exists());
    assert!(part_files(dir.path()).is_empty());
    assert_eq!(server.requests.lock().unwrap()[0].1.as_deref(), Some("bytes=100-"));
    // The next attempt starts from zero and gets the file.
    fetch(&s, dir.path(), &opts).unwrap();
    assert_eq!(std::fs::read(dir.path().join("dest/file")).unwrap(), body);
}

#[test]
fn hub_names_that_leave_the_cache_are_refused_at_check_and_nothing_is_written() {
    let server = serve(vec![("/config.json", Route::File(b"{}".to_vec()))]);
    let p = Project::new("pretrained m = diffusers { repo = \"..\", revision = \"..\" }\n");
    let xdg = p.path().join("xdg-cache");
    let before = files_below(&xdg);
    let check = p.difflow(&["check", "p.diff"], &[]);
    assert_eq!(check.code(), 1, "{}", check.stderr());
    assert!(check.stderr().contains("`..` is not a Hub repository id"), "{}", check.stderr());
    assert!(check.stderr().contains("`..` is not a branch, tag or commit name"), "{}", check.stderr());
    let run = p.difflow(&["run", "p.diff"], &[("HF_ENDPOINT", &server.base)]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("not a Hub repository id"), "{}", run.stderr());
    assert!(server.requests.lock().unwrap().is_empty());
    assert_eq!(files_below(&xdg), before);
    assert!(children_peak_kib() < 1 << 20);
}

#[test]
fn run_stops_an_endless_dataset_download_at_the_cap_from_the_environment() {
    let server = serve(vec![("/cifar.tgz", Route::Endless)]);
    let p = Project::new("dataset pics = cifar10 { split = \"test\" }\n");
    // Another checksum than the pinned one: the size is unpinned, the cap applies.
    let toml = format!("[sources.cifar10]\nurl = \"{}/cifar.tgz\"\nsha256 = \"{}\"\n", server.base, "ab".repeat(32));
    std::fs::write(p.path().join("difflow.toml"), toml).unwrap();
    let out = p.difflow(&["run", "p.diff"], &[("DIFFLOW_FETCH_MAX_BYTES", "3000000")]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("more than the 3000000"), "{}", out.stderr());
    let user_cache = p.path().join("xdg-cache/difflow");
    assert!(files_below(&user_cache).iter().all(|(p, _)| !p.to_string_lossy().ends_with(".part")));
    assert!(p.take_worker_log().is_empty());
    assert!(children_peak_kib() < 1 << 20);
    let bad = p.difflow(&["run", "p.diff"], &[("DIFFLOW_FETCH_DEADLINE", "soon")]);
    assert!(bad.stderr().contains("DIFFLOW_FETCH_DEADLINE must be a number of seconds"), "{}", bad.stderr());
}
