//! A push killed for real in the middle of a file, on each kind of remote the other tests
//! serve: a folder, nginx with WebDAV PUT and s3rver on 127.0.0.1. The train entry of the
//! toy pipeline carries a large `big.bin`; the push dies while that file is on its way (a
//! folder's push by SIGXFSZ once it has written a set part of it, so exactly there; an
//! HTTP or S3 push by SIGKILL once the server is receiving it). Then a colleague's `run
//! --pull` takes only whole entries, refuses nothing, computes the rest to the same lock;
//! the next push completes the remote, after which nothing is computed.

mod cli_support;
mod remote_support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cli_support::Project;
use remote_support::nginx::{file_url, Nginx};
use remote_support::s3rver::S3rver;
use remote_support::{lock_text, ok, Target};

const MIB: u64 = 1 << 20;
const SIGKILL: i32 = 9;
const SIGXFSZ: i32 = 25;

/// `target` with the worker double writing `mib` MiB of `big.bin` into the train entry.
fn with_big_train(mut target: Target, mib: u64) -> Target {
    target.env.extend([("BIG_KIND".into(), "train".into()), ("BIG_BYTES".into(), (mib * MIB).to_string())]);
    target
}

/// The blake3 digest of `big.bin` in the project's train entry.
fn big_digest(p: &Project) -> String {
    p.entries()
        .into_iter()
        .find_map(|dir| {
            let m: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
            m["outputs"].get("big.bin").map(|out| out["blake3"].as_str().unwrap().to_string())
        })
        .expect("no entry has big.bin")
}

/// `difflow push p.diff` in `p` with the target's environment, in the background.
fn push_command(target: &Target, p: &Project) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_difflow"));
    cmd.args(["push", "p.diff"])
        .current_dir(p.path())
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Start the push and SIGKILL it as soon as `receiving()` (the server has begun taking
/// `big.bin`), failing if the push ends first or after two minutes (a bound against
/// hanging, not a timing).
fn kill_while(cmd: &mut Command, receiving: impl Fn() -> bool) -> ExitStatus {
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !receiving() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the push ended ({status}) before the server received any of big.bin");
        }
        assert!(Instant::now() < deadline, "gave up waiting for the server to receive big.bin");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap()
}

/// How a server stores an upload.
#[derive(PartialEq)]
enum Server {
    /// All of it or nothing (a folder's rename, nginx, S3 itself).
    AllOrNothing,
    /// As it arrives (s3rver): a killed upload leaves its start, which it serves.
    AsItArrives,
}

/// A runs and starts a push that `interrupt` kills in the middle of `big.bin` (returning
/// how it ended); `stored(digest)` says whether the remote holds the whole blob. Then B
/// pulls and computes, the next push completes the remote, and C computes nothing.
fn a_killed_push_leaves_no_partial_entry(
    target: &Target,
    server: Server,
    interrupt: impl FnOnce(&Project, &str) -> ExitStatus,
    died_by: i32,
    stored: impl Fn(&str) -> bool,
) {
    let a = target.project();
    ok(&target.run(&a, &[]));
    let digest = big_digest(&a);
    let status = interrupt(&a, &digest);
    assert_eq!(status.signal(), Some(died_by), "the push was not killed: {status}");
    assert!(
        !stored(&digest),
        "the remote has all of big.bin: the push sent it before it was killed (make big.bin larger)"
    );

    // What the killed push left is never taken as an entry: B pulls only whole ones.
    let b = target.project();
    let out = target.run(&b, &["--pull"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    // A manifest whose upload was killed is the only thing refused, and only where the
    // server shows the start of an upload; a manifest never names a blob that is not whole.
    let stderr = out.stderr();
    let refused: Vec<&str> = stderr.lines().filter(|l| l.contains("from the remote")).collect();
    let torn_manifest = |l: &&str| l.contains(".toml is not a difflow manifest");
    assert!(
        refused.is_empty() || (server == Server::AsItArrives && refused.iter().all(torn_manifest)),
        "a pull refused something:\n{stderr}"
    );
    assert!(b.take_worker_log().contains(&"ddpm".to_string()), "B took the unfinished train entry");
    assert_eq!(lock_text(&a), lock_text(&b));

    // The next push uploads what is missing, big.bin whole; then C computes nothing.
    let pushed = ok(&target.difflow(&a, &["push", "p.diff"]));
    assert!(pushed.contains("pushed  train ddpm ("), "{pushed}");
    assert!(stored(&digest), "the second push did not store big.bin");
    let c = target.project();
    let out = ok(&target.run(&c, &["--pull"]));
    assert!(c.take_worker_log().is_empty(), "C computed something:\n{out}");
    assert!(out.contains("pulled 5 entries"), "{out}");
    assert_eq!(lock_text(&a), lock_text(&c));
}

#[test]
fn a_push_to_a_folder_killed_inside_a_file_leaves_no_partial_entry() {
    let remote = tempfile::tempdir().unwrap();
    let target = with_big_train(Target::url(&file_url(remote.path())), 32);
    let interrupt = |a: &Project, _: &str| {
        // The kernel stops the push with SIGXFSZ when a file it writes passes 8 MiB:
        // only the remote's copy of big.bin gets that large.
        let mut prlimit = Command::new("prlimit");
        let push = push_command(&target, a);
        prlimit.arg(format!("--fsize={}", 8 * MIB)).arg("--").arg(push.get_program()).args(push.get_args());
        prlimit.current_dir(a.path()).envs(target.env.iter().map(|(k, v)| (k, v)));
        prlimit.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap()
    };
    let cas = remote.path().join("cas");
    let stored = |digest: &str| cas.join(digest).is_file();
    a_killed_push_leaves_no_partial_entry(&target, Server::AllOrNothing, interrupt, SIGXFSZ, stored);
    // The killed push's temporary file is left under a hidden name no pull reads.
    let hidden = std::fs::read_dir(&cas).unwrap().filter_map(Result::ok);
    assert!(hidden.into_iter().any(|e| e.file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn a_push_to_nginx_killed_inside_a_file_leaves_no_partial_entry() {
    let Some(server) = Nginx::start(None) else {
        eprintln!("SKIPPED: nginx is not installed (Debian package nginx-light); the HTTP remote is untested");
        return;
    };
    let target = with_big_train(Target::url(&format!("http://127.0.0.1:{}/cache", server.port)), 128);
    // nginx writes a request body to its temporary folder and moves it into place whole.
    let body_temp = server.dir.path().join("tmp");
    let receiving = || std::fs::read_dir(&body_temp).unwrap().next().is_some();
    let interrupt = |a: &Project, _: &str| kill_while(&mut push_command(&target, a), receiving);
    let cas = server.root.join("cache/cas");
    let stored = |digest: &str| cas.join(digest).is_file();
    a_killed_push_leaves_no_partial_entry(&target, Server::AllOrNothing, interrupt, SIGKILL, stored);
}

#[test]
fn a_push_to_s3_killed_inside_a_file_leaves_no_partial_entry() {
    let Some(server) = S3rver::start() else {
        eprintln!("SKIPPED: s3rver is not in tests/s3_server/node_modules (scripts/setup_tests.sh); S3 is untested");
        return;
    };
    let target = with_big_train(server.target("killed"), 64);
    // s3rver writes an object's bytes to its file as they arrive and its metadata (what
    // makes it exist for GET and HEAD) once the body is complete.
    let cas = server.objects("killed/cas");
    let object = |digest: &str, what: &str| cas.join(format!("{digest}._S3rver_{what}"));
    let interrupt = |a: &Project, digest: &str| {
        kill_while(&mut push_command(&target, a), || {
            std::fs::metadata(object(digest, "object")).is_ok_and(|m| m.len() > 0)
        })
    };
    let stored = |digest: &str| Path::new(&object(digest, "metadata.json")).is_file();
    a_killed_push_leaves_no_partial_entry(&target, Server::AsItArrives, interrupt, SIGKILL, stored);
}
