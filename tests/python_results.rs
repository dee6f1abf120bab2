//! The `difflow` Python package (python/difflow) on cache entries laid out by hand, as
//! `difflow run` writes them: which entry a stage name reads, the `cache` setting of
//! `difflow.toml`, lazily loaded tensors, and the errors for a pipeline never run, an
//! unknown stage, another pipeline's lock file and an entry that is gone. The same package,
//! installed by pip, reads a real run in tests/pip_install.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let venv = std::env::var_os("DIFFLOW_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv"));
    let python = venv.join("bin/python");
    assert!(python.exists(), "{} is missing: run `. scripts/setup.sh` first", python.display());
    python
}

/// Runs `code` with the package from the source tree, in `dir`; its stdout, or a failure
/// with both streams.
fn run_python(dir: &Path, code: &str) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .env("PYTHONPATH", repo().join("python"))
        .current_dir(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout.into_owned()
}

/// A cache entry `key` in `cache` as `difflow run` commits it: `manifest.toml` naming the
/// key, the params JSON and the outputs; `metrics.json` when given.
fn entry(cache: &Path, key: &str, kind: &str, params: &str, outputs: &[&str], metrics: Option<&str>) {
    let dir = cache.join(key);
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = format!(
        "key = \"{key}\"\nkind = \"{kind}\"\nvariant = \"\"\ninstances = []\nstarted = \"\"\nfinished = \"\"\n\
         duration_s = 0.5\nparams = '{params}'\nkey_material = \"\"\ninputs = {{}}\nmetrics = {{ loss = 0.25 }}\n"
    );
    for output in outputs {
        manifest.push_str(&format!("[outputs.\"{output}\"]\nblake3 = \"00\"\nsize = 1\n"));
    }
    std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
    if let Some(metrics) = metrics {
        std::fs::write(dir.join("metrics.json"), metrics).unwrap();
    }
}

/// A folder with `p.diff`, its lock file (a `fit`, a swept `gen`, a hidden statistics
/// stage, sorted by name as `difflow run` writes them) and, under `cache`, the entries of `gen` and `fit`; a sample tensor file is
/// written by safetensors itself.
fn project(cache: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.diff"), "dataset pts = toy { shape = \"gaussians8\" }\n").unwrap();
    std::fs::write(
        dir.path().join("difflow.lock"),
        "pipeline = \"p.diff\"\n\
         [stages.fit]\nkey = \"aa01\"\nkind = \"train\"\n\
         [stages.\"gen[steps=10]\"]\nkey = \"bb10\"\nkind = \"sample\"\n\
         [stages.\"gen[steps=5]\"]\nkey = \"bb05\"\nkind = \"sample\"\n\
         [stages.\"stats(gen[steps=5], inception)\"]\nkey = \"cc05\"\nkind = \"stats\"\n",
    )
    .unwrap();
    let cache = dir.path().join(cache);
    entry(&cache, "aa01", "train", r#"{"steps": 20, "lr": 0.001}"#, &["loss.csv"], None);
    for (key, steps) in [("bb05", 5), ("bb10", 10)] {
        let metrics = format!(r#"{{"fid": {steps}.5, "is": {{"mean": 2.0, "std": 0.5}}, "note": "x"}}"#);
        entry(
            &cache,
            key,
            "sample",
            &format!(r#"{{"count": 8, "steps": {steps}}}"#),
            &["samples.safetensors"],
            Some(&metrics),
        );
    }
    let samples = cache.join("bb05/samples.safetensors");
    run_python(
        dir.path(),
        &format!(
            "import torch\nfrom safetensors.torch import save_file\nsave_file({{'points': torch.ones(8, 2)}}, {:?})",
            samples.to_str().unwrap()
        ),
    );
    std::fs::copy(&samples, cache.join("bb10/samples.safetensors")).unwrap();
    dir
}

#[test]
fn a_stage_name_reads_its_entries_with_numbers_params_and_lazy_tensors() {
    let dir = project(".difflow/cache");
    let out = run_python(
        dir.path(),
        r#"
import difflow, sys
fit = difflow.results("p.diff", "fit")
assert isinstance(fit, difflow.StageResult), fit
assert (fit.name, fit.kind, fit.key) == ("fit", "train", "aa01"), fit
assert fit.params == {"steps": 20, "lr": 0.001}, fit.params
assert fit.numbers == {"loss": 0.25}, fit.numbers   # no metrics.json: the reported numbers
assert list(fit.files) == ["loss.csv"] and fit.files["loss.csv"].parent == fit.dir
gens = difflow.results("p.diff", "gen")
assert [g.name for g in gens] == ["gen[steps=10]", "gen[steps=5]"], gens
five = difflow.results("p.diff", "gen[steps=5]")
assert five.numbers == {"fid": 5.5, "is.mean": 2.0, "is.std": 0.5}, five.numbers
assert five.params["steps"] == 5
assert "torch" not in sys.modules, "torch was imported before a tensor was read"
points = five.tensors["samples"]["points"]
assert tuple(points.shape) == (8, 2) and float(points.sum()) == 16.0, points
assert list(five.tensors["samples"]) == ["points"]
assert difflow.lock("p.diff")["stages"]["fit"]["key"] == "aa01"
print("ok")
"#,
    );
    assert_eq!(out.trim(), "ok");
}

#[test]
fn the_cache_setting_of_difflow_toml_moves_the_entries() {
    let dir = project("elsewhere/entries");
    std::fs::write(dir.path().join("difflow.toml"), "cache = \"elsewhere/entries\"\n").unwrap();
    let out = run_python(dir.path(), "import difflow\nprint(difflow.results('p.diff', 'fit').dir)");
    assert_eq!(PathBuf::from(out.trim()), dir.path().canonicalize().unwrap().join("elsewhere/entries/aa01"));
}

/// The message of the `DifflowError` that `call` raises in `dir`.
fn error_of(dir: &Path, call: &str) -> String {
    run_python(
        dir,
        &format!(
            "import difflow\ntry:\n    {call}\nexcept difflow.DifflowError as e:\n    print(e)\nelse:\n    raise SystemExit('no error')"
        ),
    )
}

#[test]
fn unknown_stages_unrun_pipelines_other_locks_and_lost_entries_are_clear_errors() {
    let dir = project(".difflow/cache");
    let unknown = error_of(dir.path(), "difflow.results('p.diff', 'gne')");
    assert!(unknown.contains("no stage `gne` in the last run of p.diff"), "{unknown}");
    assert!(unknown.contains("The stages are: fit, gen\n"), "{unknown}");

    std::fs::write(dir.path().join("q.diff"), "").unwrap();
    let other = error_of(dir.path(), "difflow.results('q.diff', 'fit')");
    assert!(other.contains("holds no record of q.diff (it records p.diff)"), "{other}");
    // Pipelines sharing the folder: q.diff's record is a section of the same lock file.
    let mut lock = std::fs::read_to_string(dir.path().join("difflow.lock")).unwrap();
    lock.push_str("[pipelines.\"q.diff\".stages.fit]\nkey = \"aa01\"\nkind = \"train\"\n");
    std::fs::write(dir.path().join("difflow.lock"), lock).unwrap();
    let shared = run_python(
        dir.path(),
        "import difflow\nprint(difflow.results('q.diff', 'fit').key, list(difflow.lock('p.diff')))",
    );
    assert_eq!(shared.trim(), "aa01 ['pipeline', 'stages']");

    std::fs::remove_dir_all(dir.path().join(".difflow/cache/bb10")).unwrap();
    let lost = error_of(dir.path(), "difflow.results('p.diff', 'gen')");
    assert!(lost.contains("the cache entry of `gen[steps=10]` (key bb10) is missing"), "{lost}");
    assert!(lost.contains("difflow run p.diff --target 'gen[steps=10]'"), "{lost}");

    std::fs::remove_file(dir.path().join("difflow.lock")).unwrap();
    let unrun = error_of(dir.path(), "difflow.lock('p.diff')");
    assert!(unrun.contains("p.diff has not been run: there is no difflow.lock beside it"), "{unrun}");
    let missing = error_of(dir.path(), "difflow.results('nowhere.diff', 'fit')");
    assert!(missing.contains("there is no pipeline file nowhere.diff"), "{missing}");
}
