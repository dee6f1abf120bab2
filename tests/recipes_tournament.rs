//! The recipe tournament (`pipelines/recipes/tournament.diff`) runs end to end with the real
//! worker as a tiny twin of itself: the same file with its sizes `--set` to a few steps and
//! samples. It checks that every recipe trains, samples and is scored, and that the report
//! pools the replicates per recipe; not the recipes' quality.

mod cli_support;

use std::path::Path;

use cli_support::{difflow_real, ran};
use difflow::cache::LockFile;

const TINY: [&str; 7] =
    ["steps=2", "warmup=1", "batch=8", "count=4", "sampling_steps=2", "heun_steps=2", "judge_steps=2"];

#[test]
fn the_tournament_runs_every_recipe_at_a_tiny_size() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mnist = root.join("data/mnist");
    assert!(mnist.join("train-images-idx3-ubyte.gz").exists(), "{} is incomplete: run setup first", mnist.display());
    // The pipeline reads ../../data/mnist from its folder, as in the repository.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("pipelines/recipes");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(&mnist, dir.path().join("data/mnist")).unwrap();
    std::fs::copy(root.join("pipelines/recipes/tournament.diff"), folder.join("tournament.diff")).unwrap();

    let mut args = vec!["run", "tournament.diff", "--device", "cpu"];
    for set in TINY {
        args.extend(["--set", set]);
    }
    let (code, out, err) = difflow_real(&folder, &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    let done = ran(&out);
    let trained: Vec<&String> = done.iter().filter(|n| !n.contains('(') && is_train(n)).collect();
    assert_eq!(trained.len(), 12, "six recipes, two replicates each: {done:?}");
    let lock = LockFile::read(&folder.join("difflow.lock"));
    for recipe in ["old", "ss", "cos_lr", "min_snr", "v"] {
        let setting = format!("scores[from={recipe}]");
        let summary = lock.replicates.get(&setting).unwrap_or_else(|| panic!("no {setting}: {:?}", lock.replicates));
        assert_eq!(summary.instances.len(), 2, "{setting}");
        assert!(summary.metrics["accuracy"].mean.is_finite() && summary.metrics["fid"].mean.is_finite(), "{setting}");
    }
    let edm = &lock.replicates["scores_edm"];
    assert_eq!(edm.instances.len(), 2);
    assert!(edm.metrics["fid"].mean.is_finite(), "{:?}", edm.metrics);

    let report = folder.join(".difflow/cache").join(&lock.stages["tournament"].key).join("report.md");
    let md = std::fs::read_to_string(report).unwrap();
    for recipe in ["old", "ss", "cos_lr", "min_snr", "v"] {
        assert!(md.contains(&format!("| `scores[from={recipe}]` |")), "a row per recipe ({recipe}): {md}");
    }
    assert!(md.contains("| `scores_edm` |"), "{md}");
}

/// The bare pipeline (`pipelines/recipes/defaults.diff`): only data, net, `steps`,
/// `batch` and the guidance strength, every other key at its default, beside the 2020
/// recipe spelled out; tiny, it checks that the defaults resolve, run and are scored.
#[test]
fn the_defaults_pipeline_runs_at_a_tiny_size() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("pipelines/recipes");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(root.join("data/mnist"), dir.path().join("data/mnist")).unwrap();
    std::fs::copy(root.join("pipelines/recipes/defaults.diff"), folder.join("defaults.diff")).unwrap();
    let args =
        ["run", "defaults.diff", "--device", "cpu", "--set", "steps=2", "--set", "count=4", "--set", "judge_steps=2"];
    let (code, out, err) = difflow_real(&folder, &args, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lock = LockFile::read(&folder.join("difflow.lock"));
    for name in ["scores", "scores_2020", "real"] {
        let metrics = &lock.stages[name].metrics;
        assert!(metrics["accuracy"].is_finite() && metrics["fid"].is_finite(), "{name}: {metrics:?}");
    }
}

fn is_train(name: &str) -> bool {
    ["old[", "ss[", "cos_lr[", "min_snr[", "edm[", "v["].iter().any(|prefix| name.starts_with(prefix))
}
