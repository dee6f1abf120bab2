//! Untrusted recipes and careless users, against the real `difflow` binary under
//! `prlimit --as` (1 GiB) and `timeout`: `use` of files outside the project, of non-`.diff`
//! files, FIFOs, devices and huge files; dataset paths at FIFOs and devices; a
//! `difflow.toml` at a FIFO, a device or too large; `fmt` and `compare` of such files; `cache gc`
//! beside a user's folder and beside a running pipeline; what a failed stage leaves.
//! Every hostile case must end with exit 1 or 2 and a message, in seconds, and print no
//! byte of a file it was not allowed to read.

mod cli_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{Project, TOY};

const MEMORY_LIMIT: u64 = 1 << 30;
const TIME_LIMIT_S: u64 = 30;
/// Set in every child's environment: `/proc/self/environ` holds it.
const SECRET: &str = "hostile-test-secret-4f1d9a";

struct Outcome {
    code: Option<i32>,
    output: String,
    seconds: f64,
}

fn difflow_limited(dir: &Path, args: &[&str]) -> Outcome {
    let started = Instant::now();
    let out = Command::new("prlimit")
        .arg(format!("--as={MEMORY_LIMIT}"))
        .args(["timeout", "-s", "KILL", &TIME_LIMIT_S.to_string(), &binary_under_test()])
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("DIFFLOW_SECRET", SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("prlimit (util-linux) and timeout (coreutils) run");
    Outcome {
        code: out.status.code(),
        output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// `DIFFLOW_UNDER_TEST=PATH` runs the limited cases against another binary (an older
/// build, to see what they catch).
fn binary_under_test() -> String {
    std::env::var("DIFFLOW_UNDER_TEST").unwrap_or_else(|_| env!("CARGO_BIN_EXE_difflow").to_string())
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// Lines of a file that must never appear in difflow's output.
fn secret_lines(path: &str) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .split(['\n', '\0'])
        .map(str::trim)
        .filter(|l| l.len() >= 6)
        .map(str::to_string)
        .collect()
}

fn check_case(case: &str, o: &Outcome, expect: &str, failures: &mut Vec<String>) {
    let mut why = Vec::new();
    if !matches!(o.code, Some(1) | Some(2)) {
        why.push(format!("exit {:?}", o.code));
    }
    if o.output.contains("panicked") || !o.output.contains(expect) {
        why.push(format!("output lacks {expect:?} or panics"));
    }
    if o.output.contains(SECRET) {
        why.push("it printed the environment".into());
    }
    if let Some(line) = secret_lines("/etc/passwd").iter().find(|l| o.output.contains(l.as_str())) {
        why.push(format!("it printed a line of /etc/passwd: {line}"));
    }
    if !why.is_empty() {
        failures.push(format!("{case}: {} after {:.1} s\n{}", why.join(", "), o.seconds, o.output));
    }
}

#[test]
fn use_reads_only_diff_files_inside_the_project() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    let sub = project.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(project.join("difflow.toml"), "").unwrap();
    std::fs::write(root.path().join("outside.diff"), "schedule s = linear { steps = 10 }\n").unwrap();
    std::fs::write(project.join("notes.txt"), format!("{SECRET}\n")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", project.join("passwd.diff")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", project.join("environ.diff")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", project.join("zero.diff")).unwrap();
    std::os::unix::fs::symlink("../outside.diff", project.join("sneaky.diff")).unwrap();
    std::os::unix::fs::symlink(".", project.join("loop")).unwrap();
    mkfifo(&project.join("fifo.diff"));
    std::fs::create_dir_all(project.join("folder.diff")).unwrap();
    std::fs::write(project.join("huge.diff"), vec![b'#'; 5 << 20]).unwrap();
    let mut binary = b"schedule s = linear { steps = 10 }\n# ".to_vec();
    binary.extend_from_slice(&[0xff, 0xfe, 0x00]);
    binary.extend_from_slice(SECRET.as_bytes());
    std::fs::write(project.join("binary.diff"), binary).unwrap();
    std::fs::write(project.join("self.diff"), "use \"loop/self.diff\"\n").unwrap();

    let cases: &[(&str, &str)] = &[
        ("/etc/passwd", "reads only `.diff` files"),
        ("/proc/self/environ", "reads only `.diff` files"),
        ("/dev/zero", "reads only `.diff` files"),
        ("notes.txt", "reads only `.diff` files"),
        ("std/../../../etc/passwd", "standard library"),
        ("passwd.diff", "outside the project"),
        ("environ.diff", "outside the project"),
        ("zero.diff", "outside the project"),
        ("sneaky.diff", "outside the project"),
        ("../outside.diff", "outside the project"),
        ("/etc/x.diff", "no such file"),
        ("fifo.diff", "not a regular file"),
        ("folder.diff", "not a regular file"),
        ("huge.diff", "at most"),
        ("binary.diff", "not UTF-8"),
        ("self.diff", "import cycle"),
    ];
    let (mut failures, mut slowest) = (Vec::new(), 0f64);
    for (written, expect) in cases {
        // From the project folder and from a sub-folder (the project root is found upward).
        for dir in [&project, &sub] {
            let rel = if dir == &sub && !written.starts_with('/') && !written.starts_with("std/") {
                format!("../{written}")
            } else {
                written.to_string()
            };
            std::fs::write(dir.join("p.diff"), format!("use \"{rel}\"\n")).unwrap();
            let o = difflow_limited(dir, &["check", "p.diff"]);
            check_case(&format!("use \"{rel}\" in {}", dir.display()), &o, expect, &mut failures);
            slowest = slowest.max(o.seconds);
        }
    }
    // The pipeline file itself at a FIFO, a device or a /proc entry.
    for file in [project.join("fifo.diff").display().to_string(), "/dev/zero".into(), "/proc/self/environ".into()] {
        let o = difflow_limited(&project, &["check", &file]);
        check_case(&format!("check {file}"), &o, "cannot read", &mut failures);
        slowest = slowest.max(o.seconds);
    }
    let n = cases.len() * 2 + 3;
    println!("use paths: {n} cases, {} problems; slowest {slowest:.2} s", failures.len());
    assert!(failures.is_empty(), "{} problems in {n} cases:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn use_roots_in_difflow_toml_open_more_folders() {
    let root = tempfile::tempdir().unwrap();
    let (project, shared) = (root.path().join("project"), root.path().join("shared"));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("s.diff"), "schedule s = cosine { steps = 100 }\n").unwrap();
    std::fs::write(project.join("p.diff"), "use \"../shared/s.diff\"\n").unwrap();
    let o = difflow_limited(&project, &["check", "p.diff"]);
    assert_eq!(o.code, Some(1), "{}", o.output);
    assert!(o.output.contains("outside the project"), "{}", o.output);
    std::fs::write(project.join("difflow.toml"), "use_roots = [\"../shared\"]\n").unwrap();
    let o = difflow_limited(&project, &["check", "p.diff"]);
    assert_eq!(o.code, Some(0), "{}", o.output);
}

#[test]
fn input_paths_must_be_files_or_folders_of_files() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    mkfifo(&dir.join("pipe"));
    std::fs::create_dir_all(dir.join("set/sub")).unwrap();
    std::fs::write(dir.join("set/sub/a.png"), b"x").unwrap();
    mkfifo(&dir.join("set/sub/pipe"));
    let (mut failures, mut slowest, mut n) = (Vec::new(), 0f64, 0);
    for (path, expect) in [
        ("pipe", "FIFO"),
        ("set", "FIFO"),
        ("/dev/zero", "a device"),
        ("/dev/null", "a device"),
        ("/proc/self/environ", "/proc"),
        ("/proc/self", "/proc"),
    ] {
        std::fs::write(dir.join("p.diff"), format!("dataset d = images {{ path = \"{path}\", size = 8 }}\n")).unwrap();
        for command in ["check", "plan"] {
            let o = difflow_limited(dir, &[command, "p.diff"]);
            check_case(&format!("{command} with path = {path}"), &o, expect, &mut failures);
            if !o.output.contains("bad_input_path") {
                failures.push(format!("{command} with path = {path}: no bad_input_path diagnostic\n{}", o.output));
            }
            slowest = slowest.max(o.seconds);
            n += 1;
        }
    }
    println!("input paths: {n} cases, {} problems; slowest {slowest:.2} s", failures.len());
    assert!(failures.is_empty(), "{} problems in {n} cases:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn a_settings_file_that_is_not_a_regular_toml_file_fails_check() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path();
    let sub = project.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(project.join("p.diff"), TOY).unwrap();
    std::fs::write(sub.join("p.diff"), TOY).unwrap();
    let settings = project.join("difflow.toml");
    let fifo = || mkfifo(&settings);
    let zero = || std::os::unix::fs::symlink("/dev/zero", &settings).unwrap();
    let huge = || std::fs::write(&settings, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let invalid = || std::fs::write(&settings, "jobs = \"many\"\n").unwrap();
    let cases: [(&str, &dyn Fn(), &str); 4] = [
        ("a FIFO", &fifo, "it is a FIFO, not a regular file"),
        ("a link to /dev/zero", &zero, "it is a device, not a regular file"),
        ("a 2 MiB file", &huge, "at most 1048576 bytes"),
        ("invalid", &invalid, "difflow.toml is not valid"),
    ];
    let (mut failures, mut slowest, mut n) = (Vec::new(), 0f64, 0);
    for (what, make, expect) in cases {
        let _ = std::fs::remove_file(&settings);
        make();
        // Beside the pipeline, and in the project folder above it (which decides where a
        // `use` may read).
        for dir in [project, sub.as_path()] {
            let o = difflow_limited(dir, &["check", "p.diff"]);
            let case = format!("difflow.toml {what}, check in {}", dir.display());
            check_case(&case, &o, expect, &mut failures);
            if o.code != Some(1) || !o.output.contains("difflow::bad_settings") || o.output.contains(": ok") {
                failures.push(format!("{case}: not a bad_settings diagnostic with exit 1\n{}", o.output));
            }
            slowest = slowest.max(o.seconds);
            n += 1;
        }
    }
    println!("settings files: {n} cases, {} problems; slowest {slowest:.2} s", failures.len());
    assert!(failures.is_empty(), "{} problems in {n} cases:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn fmt_and_compare_read_only_regular_files() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    mkfifo(&dir.join("fifo.diff"));
    mkfifo(&dir.join("fifo.lock"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.diff")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.lock")).unwrap();
    std::fs::write(dir.join("ok.lock"), "").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["fmt", "fifo.diff"], "it is a FIFO, not a regular file"),
        (&["fmt", "zero.diff"], "it is a device, not a regular file"),
        (&["compare", "fifo.lock", "ok.lock"], "it is a FIFO, not a regular file"),
        (&["compare", "ok.lock", "zero.lock"], "it is a device, not a regular file"),
    ];
    let mut failures = Vec::new();
    for (args, expect) in cases {
        let o = difflow_limited(dir, args);
        check_case(&args.join(" "), &o, expect, &mut failures);
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n\n"));
}

fn staging_and_job_files(p: &Project) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(p.cache_dir()) else { return Vec::new() };
    rd.filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".staging") || n.ends_with(".job.json"))
        .collect()
}

#[test]
fn a_failed_stage_leaves_no_staging_folder_or_job_file_but_a_checkpoint_is_kept() {
    let p = Project::new(TOY);
    let out = p.difflow(&["run", "p.diff"], &[("FAIL_KIND", "sample")]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert_eq!(staging_and_job_files(&p), Vec::<String>::new());
    let out = p.difflow(&["run", "p.diff"], &[("CRASH_KIND", "sample")]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert_eq!(staging_and_job_files(&p), Vec::<String>::new());
    // A killed training stage keeps its checkpoint, and says so.
    let q = Project::new(TOY);
    let out = q.difflow(&["run", "p.diff"], &[("CRASH_KIND", "train")]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("checkpoint is kept"), "{}", out.stderr());
    let left = staging_and_job_files(&q);
    assert!(left.len() == 1 && left[0].ends_with(".staging"), "{left:?}");
}

#[test]
fn cache_gc_spares_a_user_folder_and_the_entries_of_a_running_pipeline() {
    let p = Project::new(TOY);
    // Another pipeline in the same folder that uses none of TOY's entries.
    std::fs::write(p.path().join("other.diff"), "dataset d = toy { shape = \"moons\", count = 64 }\n").unwrap();
    let user = p.cache_dir().join("cafe");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir_all(p.cache_dir().join("beef.staging")).unwrap();

    // A run whose every stage takes a while; gc runs as soon as its first entry is in.
    let mut run = Command::new(env!("CARGO_BIN_EXE_difflow"))
        .args(["run", "p.diff"])
        .current_dir(p.path())
        .env("DIFFLOW_WORKER", &p.worker)
        .env("SLEEP", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while p.entries().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "no entry appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = p.entries();
    let gc = p.difflow(&["cache", "gc", "other.diff"], &[]);
    assert_eq!(gc.code(), 0, "{}", gc.stderr());
    assert!(gc.stdout().contains("skipped"), "{}", gc.stdout());
    for entry in &first {
        assert!(entry.join("manifest.toml").is_file(), "gc removed {} under a running pipeline", entry.display());
    }
    assert!(run.wait().unwrap().success(), "the running pipeline failed");
    assert_eq!(std::fs::read(user.join("notes.txt")).unwrap(), b"mine");
    assert!(p.cache_dir().join("beef.staging").is_dir());
    let again = p.run(&[]);
    assert!(again.stdout().contains("nothing to do"), "{}", again.stdout());

    // Once nothing reads them, gc removes TOY's entries (and still no user folder).
    let gc = p.difflow(&["cache", "gc", "other.diff"], &[]);
    assert_eq!(gc.code(), 0, "{}", gc.stderr());
    assert!(p.entries().is_empty(), "{:?}", p.entries());
    assert_eq!(std::fs::read(user.join("notes.txt")).unwrap(), b"mine");
}
