//! The example project `pipelines/own_code/` end to end, shrunk with its knobs: the DiT
//! of `dit.py` trains on the embedded MNIST with classifier-free guidance, samples, and a
//! classifier of the same pipeline judges its samples; `show` prints its size and shape.

mod cli_support;

use std::ffi::{OsStr, OsString};
use std::path::Path;

use cli_support::{difflow_real, ran};

/// A copy of the example in `root/pipelines/own_code`, with `root/data` the repository's
/// data (the pipeline reads `../../data/mnist`), trusted through `root/xdg-config`.
fn example_copy(root: &Path) -> (std::path::PathBuf, Vec<(&'static str, OsString)>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mnist = repo.join("data/mnist");
    assert!(mnist.join("train-images-idx3-ubyte.gz").exists(), "{} is missing: run scripts/setup.sh", mnist.display());
    std::os::unix::fs::symlink(repo.join("data"), root.join("data")).unwrap();
    let project = root.join("pipelines/own_code");
    std::fs::create_dir_all(&project).unwrap();
    for entry in std::fs::read_dir(repo.join("pipelines/own_code")).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), project.join(entry.file_name())).unwrap();
        }
    }
    let env = vec![("XDG_CONFIG_HOME", root.join("xdg-config").into_os_string())];
    (project, env)
}

#[test]
fn the_own_code_example_trains_its_dit_samples_and_judges_it() {
    let root = tempfile::tempdir().unwrap();
    let (project, env) = example_copy(root.path());
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let difflow = |args: &[&str]| difflow_real(&project, args, &env);
    assert_eq!(difflow(&["trust", "."]).0, 0);

    let (code, out, err) = difflow(&["show", "own_code.diff", "dit"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, "model dit (python): 1,264,132 parameters\n  output: 1 × 16 × 16 per item (input: 1 × 16 × 16)\n");

    // Training must outlast the warm-up (100 steps).
    let shrink = ["--set", "STEPS=101", "--set", "SAMPLES=100", "--set", "JUDGE_STEPS=20"];
    let (code, out, err) = difflow(&[&["run", "own_code.diff", "--device", "cpu"], &shrink[..]].concat());
    assert_eq!(code, 0, "{out}\n{err}");
    let mut stages = ran(&out);
    stages.sort();
    assert_eq!(
        stages,
        [
            "curve",
            "digits",
            "euler",
            "euler_scores",
            "fit",
            "gen",
            "held_out",
            "judge",
            "memorisation",
            "samples",
            "scores",
            "study"
        ],
        "{out}"
    );
    let lock = difflow::cache::LockFile::read(&project.join("difflow.lock"));
    let entry = |instance: &str| project.join(".difflow/cache").join(&lock.stages[instance].key);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entry("scores").join("metrics.json")).unwrap()).unwrap();
    let accuracy = metrics["accuracy"].as_f64().unwrap_or(f64::NAN);
    assert!((0.0..=1.0).contains(&accuracy), "{metrics}");
    // The user's own sampler drew `gen`'s count, judged by the same classifier.
    let euler: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entry("euler_scores").join("metrics.json")).unwrap()).unwrap();
    assert_eq!(euler["count"].as_f64(), Some(100.0), "{euler}");
    assert!((0.0..=1.0).contains(&euler["accuracy"].as_f64().unwrap_or(f64::NAN)), "{euler}");
    let memorisation: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entry("memorisation").join("metrics.json")).unwrap()).unwrap();
    assert!(memorisation.as_object().is_some_and(|m| !m.is_empty()), "{memorisation}");
    let grid = std::fs::read_dir(entry("samples"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension() == Some(OsStr::new("png")));
    assert_eq!(grid.count(), 1, "the grid plot");
}
