//! End to end with the real `difflow-worker` (built beside `difflow` by
//! `cargo test --release --workspace`): a tiny toy pipeline runs, a second run does
//! nothing, a sampler change reruns only sampling and its readers, `show` reports outputs
//! and the model size.

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::{difflow_real, ran, tiny_toy};

fn difflow(dir: &Path, args: &[&str]) -> (i32, String, String) {
    difflow_real(dir, args, &[])
}

#[test]
fn toy_pipeline_runs_caches_and_reruns_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toy.diff");
    let pipeline = tiny_toy(10, "1e-3", "5", true);
    std::fs::write(&file, &pipeline).unwrap();
    let (code, out, err) = difflow(dir.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(ran(&out), ["pts", "ddpm", "gen", "pic"], "{out}");

    let (code, out, _) = difflow(dir.path(), &["run", "toy.diff"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["nothing to do: all 4 stages cached", "open:"], "{out}");
    // The one plot is named by its path, which exists.
    assert_eq!(lines.len(), 3, "{out}");
    let plot = std::path::Path::new(lines[2].trim());
    assert!(plot.ends_with("plot.png") && plot.is_file(), "{out}");

    std::fs::write(&file, pipeline.replace("ddim { steps = 5 }", "ddpm { steps = 5 }")).unwrap();
    let (_, plan, _) = difflow(dir.path(), &["plan", "toy.diff"]);
    assert!(
        plan.lines().any(|l| l.starts_with("stale") && l.contains("gen") && l.contains("sampler ddim → ddpm")),
        "{plan}"
    );
    let (code, out, err) = difflow(dir.path(), &["run", "toy.diff", "--device", "cpu"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(ran(&out), ["gen", "pic"], "{out}");

    let (code, json, err) = difflow(dir.path(), &["show", "toy.diff", "gen", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["cached"], true);
    let outputs: Vec<PathBuf> = serde_json::from_value(v["outputs"].clone()).unwrap();
    assert!(outputs.iter().any(|p| p.ends_with("samples.safetensors") && p.is_file()), "{json}");

    let (code, json, err) = difflow(dir.path(), &["show", "toy.diff", "net", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // mlp on 2-D points: hidden 32, 2 layers; the count must at least cover the two
    // 32×32 hidden matrices and the 2-D input/output layers.
    assert!(v["params"].as_u64().unwrap() > 32 * 32 + 2 * 32 * 2, "{json}");
}

#[test]
fn a_missing_data_file_fails_with_exit_2_and_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.diff"),
        "dataset digits = mnist { path = \"no/such/folder\", split = \"train\" }\n",
    )
    .unwrap();
    let (code, out, err) = difflow(dir.path(), &["run", "p.diff", "--device", "cpu"]);
    assert_eq!(code, 2, "{out}\n{err}");
    // Named before any stage starts, not discovered when the dataset stage reads it.
    assert!(err.contains("missing data; nothing was run") && err.contains("dataset `digits` (mnist)"), "{err}");
    assert!(!out.contains("done "), "{out}");
    assert!(err.contains("no/such/folder"), "{err}");
    // The exact command that writes the embedded MNIST digits into that folder.
    assert!(
        err.contains("run `python3 scripts/fetch_mnist.py /") && err.contains("no/such/folder` in the difflow"),
        "{err}"
    );
}
