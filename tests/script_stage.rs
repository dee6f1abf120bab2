//! Script stages: a project Python file run with the set-up's interpreter as a cached
//! stage. Its `metrics.json` numbers are shown and locked, its key follows the script and
//! the project files it imports, a `samples.safetensors` stands where a sample stage's
//! output is read, every failure names its cause and caches nothing, and an untrusted
//! project runs none of it.

mod cli_support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use cli_support::{difflow_real, ran, state_of};

/// A project folder (canonical) with `difflow.toml`, and a user config folder of its own.
struct Project {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Project {
    fn new(pipeline: &str, files: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("difflow.toml"), "threads = 1\n").unwrap();
        std::fs::write(dir.path().join("p.diff"), pipeline).unwrap();
        let p = Project { dir, home };
        for (name, text) in files {
            p.write(name, text);
        }
        p
    }

    fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap()
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `difflow ARGS` with the real worker, this project's user config and cache, and the
    /// set-up's environment as the scripts' interpreter: (exit code, stdout, stderr).
    fn difflow(&self, args: &[&str]) -> (i32, String, String) {
        let (config, cache) = (self.home.path().join("config"), self.home.path().join("cache"));
        let venv = std::env::var_os("DIFFLOW_VENV")
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv").into_os_string());
        let env: [(&str, &OsStr); 3] = [
            ("XDG_CONFIG_HOME", config.as_os_str()),
            ("XDG_CACHE_HOME", cache.as_os_str()),
            ("DIFFLOW_VENV", venv.as_os_str()),
        ];
        difflow_real(self.dir.path(), args, &env)
    }

    fn trusted(self) -> Project {
        let (code, out, err) = self.difflow(&["trust"]);
        assert_eq!(code, 0, "{out}\n{err}");
        self
    }

    fn run(&self, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["run", "p.diff", "--device", "cpu"];
        args.extend_from_slice(extra);
        self.difflow(&args)
    }

    fn plan(&self) -> String {
        let (code, out, err) = self.difflow(&["plan", "p.diff"]);
        assert_eq!(code, 0, "{err}");
        out
    }

    /// Staging folders left in the cache (a failed stage must leave none).
    fn staging_left(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join(".difflow/cache")) else { return Vec::new() };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".staging"))
            .collect()
    }
}

/// Reads the toy points and writes their mean norm; imports a project helper.
const STATS_SCRIPT: &str = r#"import json, os
from helpers import scale
from safetensors.numpy import load_file

job = json.load(open(os.environ["DIFFLOW_JOB"]))
data = job["inputs"]["data"]
assert data["kind"] == "dataset" and data["variant"] == "toy", data
points = load_file(data["files"]["data.safetensors"])["points"]
norm = float((points ** 2).sum(axis=1).mean() ** 0.5) * scale.FACTOR
with open(os.path.join(job["out_dir"], "metrics.json"), "w") as f:
    json.dump({"rms_norm": norm, "points": int(points.shape[0])}, f)
with open(os.path.join(job["out_dir"], "hist.svg"), "w") as f:
    f.write('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>')
"#;

const STATS_PIPELINE: &str = r#"
dataset pts = toy { shape = "gaussians8", count = 64 }
script stats { run = "analysis/stats.py", inputs = { data = pts }, outputs = ["metrics.json", "hist.svg"] }
report study { include = [stats] }
"#;

fn stats_project() -> Project {
    Project::new(
        STATS_PIPELINE,
        &[
            ("analysis/stats.py", STATS_SCRIPT),
            ("analysis/helpers/__init__.py", ""),
            ("analysis/helpers/scale.py", "FACTOR = 1.0\n"),
            ("unrelated.py", "X = 1\n"),
        ],
    )
}

#[test]
fn an_untrusted_project_refuses_to_run_its_scripts() {
    let p = stats_project();
    assert_eq!(p.difflow(&["check", "p.diff"]).0, 0, "check runs no Python and needs no trust");
    let (code, out, err) = p.run(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let root = p.root();
    let expected = format!(
        "error: this pipeline runs Python code of the project {root}, which you have not trusted:\n  \
         {root}/analysis/helpers/__init__.py\n  {root}/analysis/helpers/scale.py\n  {root}/analysis/stats.py\n\
         read them, then trust the project once with:\n  difflow trust {root}\n",
        root = root.display()
    );
    assert_eq!(err, expected);
    assert!(ran(&out).is_empty(), "nothing ran: {out}");
}

#[test]
fn a_scripts_numbers_are_shown_and_locked_and_a_rerun_is_cached() {
    let p = stats_project().trusted();
    let (code, out, err) = p.run(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(ran(&out), ["pts", "stats", "study"], "{out}");
    let (code, shown, err) = p.difflow(&["show", "p.diff", "stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("metric   points = 64"), "{shown}");
    let rms: f64 = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("metric   rms_norm = "))
        .unwrap_or_else(|| panic!("no rms_norm in\n{shown}"))
        .parse()
        .unwrap();
    assert!(rms > 0.5 && rms < 5.0, "{rms}");
    let lock = std::fs::read_to_string(p.dir.path().join("difflow.lock")).unwrap();
    assert!(lock.contains("[stages.stats.metrics]") && lock.contains("rms_norm = "), "{lock}");

    let report = std::fs::read_dir(p.dir.path().join(".difflow/cache"))
        .unwrap()
        .map(|e| e.unwrap().path().join("report.md"))
        .find(|f| f.is_file())
        .expect("a report");
    let report = std::fs::read_to_string(report).unwrap();
    assert!(report.contains("| instance | points | rms_norm |"), "the numbers are a table: {report}");
    assert!(report.contains("](images/stats_hist.svg)"), "the figure is shown: {report}");

    let (code, out, err) = p.run(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to do: all 3 stages cached"), "{out}");
}

fn stats_key(p: &Project) -> String {
    let loaded = difflow::lang::load(&p.dir.path().join("p.diff"), &[]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    difflow::cache::key::stage_keys(&loaded.pipeline.unwrap()).unwrap()["stats"].clone()
}

#[test]
fn the_key_follows_the_script_its_imports_and_inputs_only() {
    let p = stats_project();
    let base = stats_key(&p);
    p.write("unrelated.py", "X = 2  # edited\n");
    assert_eq!(stats_key(&p), base, "an unrelated file changed the key");
    p.write("analysis/helpers/scale.py", "FACTOR = 2.0\n");
    let helper_edited = stats_key(&p);
    assert_ne!(helper_edited, base, "editing an imported helper kept the key");
    p.write("analysis/stats.py", &format!("{STATS_SCRIPT}# a comment\n"));
    let script_edited = stats_key(&p);
    assert_ne!(script_edited, helper_edited, "editing the script kept the key");
    p.write("p.diff", &STATS_PIPELINE.replace("count = 64", "count = 65"));
    let input_changed = stats_key(&p);
    assert_ne!(input_changed, script_edited, "changing the input stage kept the key");
    p.write("p.diff", &STATS_PIPELINE.replace(r#""hist.svg"]"#, r#""hist.svg", "b.txt"]"#));
    assert_ne!(stats_key(&p), script_edited, "changing the outputs kept the key");
}

#[test]
fn editing_the_script_reruns_it_and_editing_another_file_does_not() {
    let p = stats_project().trusted();
    assert_eq!(p.run(&[]).0, 0);
    p.write("unrelated.py", "X = 2\n");
    assert_eq!(state_of(&p.plan(), "stats"), "cached");
    p.write("analysis/stats.py", &format!("{STATS_SCRIPT}# edited\n"));
    assert_ne!(state_of(&p.plan(), "stats"), "cached");
    let (code, out, err) = p.run(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(ran(&out), ["stats", "study"], "{out}");
}

/// Each stage fails in its own way; none imports torch, so they fail fast.
const FAILING: &str = r#"
script exits { run = "fail.py", outputs = ["a.txt"] }
script missing { run = "fail.py", outputs = ["a.txt", "b.txt"] }
script undeclared { run = "fail.py", outputs = ["a.txt"] }
script bad_metrics { run = "fail.py", outputs = ["a.txt", "metrics.json"] }
script ok { run = "fail.py", outputs = ["a.txt"] }
"#;

const FAIL_SCRIPT: &str = r#"import json, os, sys
job = json.load(open(os.environ["DIFFLOW_JOB"]))
out, me = job["out_dir"], job["instance"]
open(os.path.join(out, "a.txt"), "w").write(me)
if me == "exits":
    for n in range(30):
        print(f"line {n}", file=sys.stderr)
    sys.exit(3)
if me == "undeclared":
    open(os.path.join(out, "junk.csv"), "w").write("1")
if me == "bad_metrics":
    json.dump({"fid": 1.5, "verdict": "good"}, open(os.path.join(out, "metrics.json"), "w"))
"#;

#[test]
fn each_failure_names_its_cause_and_caches_nothing() {
    let p = Project::new(FAILING, &[("fail.py", FAIL_SCRIPT)]).trusted();
    let cases = [
        ("exits", "failed (exit code 3)"),
        ("missing", "the script did not write its declared output: `b.txt`"),
        ("undeclared", "the script wrote file it does not declare: `junk.csv`"),
        ("bad_metrics", "is not an object of name → number: `verdict` is \"good\""),
    ];
    for (stage, message) in cases {
        let (code, out, err) = p.run(&["--target", stage]);
        assert_eq!(code, 2, "{stage}: {out}\n{err}");
        assert!(err.contains(message), "{stage}: {err}");
        assert_eq!(state_of(&p.plan(), stage), "new", "{stage} was cached");
        assert!(p.staging_left().is_empty(), "{stage} left {:?}", p.staging_left());
    }
    let (_, _, err) = p.run(&["--target", "exits"]);
    let tail = err.split("the script's stderr ended with:\n").nth(1).unwrap_or_else(|| panic!("no tail in {err}"));
    assert!(tail.contains("line 29") && tail.contains("line 10") && !tail.contains("line 9\n"), "{tail}");
    let (code, out, err) = p.run(&["--target", "ok"]);
    assert_eq!((code, ran(&out)), (0, vec!["ok".to_string()]), "{out}\n{err}");
}

#[test]
fn check_refuses_bad_outputs_and_scripts_outside_the_project_without_running_them() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("evil.py"), "raise SystemExit(1)\n").unwrap();
    let pipeline = r#"
dataset pts = toy { shape = "gaussians8", count = 64 }
script escapes { run = "linked.py", outputs = ["../x.txt", "meta.json"] }
script notes { run = "ok.py", inputs = { data = pts }, outputs = ["notes.txt"] }
metrics scores { samples = notes, measure = ["fid"], reference = pts }
"#;
    let p = Project::new(pipeline, &[("ok.py", "")]);
    std::os::unix::fs::symlink(outside.path().join("evil.py"), p.dir.path().join("linked.py")).unwrap();
    let (code, _, err) = cli_support::difflow_check(p.dir.path(), "p.diff");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the script `linked.py` is outside the project"), "{err}");
    assert!(err.contains("`escapes`: `../x.txt` is not a plain file name"), "{err}");
    assert!(err.contains("`escapes`: `meta.json` is written by difflow itself"), "{err}");
    assert!(err.contains("`scores` reads samples from the script `notes`, which writes none"), "{err}");
}

/// A "sampler" that hands back the first 20 training digits: the judge must find them
/// mostly right, so the metrics stage read the script's samples with their labels.
const COPY_SAMPLER: &str = r#"import json, os
from safetensors.numpy import load_file, save_file

job = json.load(open(os.environ["DIFFLOW_JOB"]))
data = load_file(job["inputs"]["digits"]["files"]["data.safetensors"])
save_file(
    {"images": data["images"][:20].copy(), "labels": data["labels"][:20].copy()},
    os.path.join(job["out_dir"], "samples.safetensors"),
    metadata={"classes": "10"},
)
"#;

#[test]
fn samples_a_script_writes_are_measured_by_a_metrics_stage() {
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    assert!(mnist.is_dir(), "{} is missing: `. scripts/setup.sh` writes it", mnist.display());
    let pipeline = format!(
        r#"
dataset digits = mnist {{ path = "{}", split = "train", size = 8, limit = 200 }}
classifier judge {{ model = encoder {{ channels = 8, mults = [1], res_blocks = 1, attention = [] }}, data = digits, steps = 40, batch = 16, lr = 2e-3 }}
script copies {{ run = "copy.py", inputs = {{ digits = digits }}, outputs = ["samples.safetensors"] }}
metrics scores {{ samples = copies, features = judge, measure = ["accuracy"] }}
plot sheet = grid {{ of = copies, count = 20 }}
"#,
        mnist.display()
    );
    let p = Project::new(&pipeline, &[("copy.py", COPY_SAMPLER)]).trusted();
    let (code, out, err) = p.run(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, shown, err) = p.difflow(&["show", "p.diff", "scores"]);
    assert_eq!(code, 0, "{err}");
    let accuracy: f64 = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("metric   accuracy = "))
        .unwrap_or_else(|| panic!("no accuracy in\n{shown}"))
        .parse()
        .unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
    assert!(shown.contains("metric   count = 20"), "{shown}");
    let (code, shown, err) = p.difflow(&["show", "p.diff", "copies"]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("meta.json"), "difflow describes the samples: {shown}");
}
