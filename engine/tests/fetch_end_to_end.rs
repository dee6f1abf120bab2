//! A newcomer's pipeline through the real `difflow` binary and worker: MNIST without
//! `path` and FID without `inception_weights`. Both are fetched from a server on
//! 127.0.0.1 (a thread of this test) into the user cache, verified, decoded by the
//! worker and measured. The weights are the seeded pt_inception-layout fixture of
//! `scripts/inception_reference.py`; the IDX files are made here.

mod common;
#[path = "../../tests/idx_support/mod.rs"]
mod idx_support;
mod inception_fixture;

use std::process::Command;

use common::{difflow_binary, serve};
use idx_support::{idx_images_gz, idx_labels_gz};
use inception_fixture::reference_dir;
use sha2::{Digest, Sha256};

/// Gzipped IDX images: `n` 28 × 28 strokes whose position depends on `seed`.
fn idx_images(n: u32, seed: u32) -> Vec<u8> {
    let stroke = move |i: u32| {
        let c = 6 + (i * 7 + seed) % 16;
        (0..784u32).map(move |p| if (p % 28).abs_diff(c) < 3 && p / 28 > 4 && p / 28 < 24 { 255 } else { 0 })
    };
    idx_images_gz(n, (0..n).flat_map(stroke))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn mnist_and_the_inception_weights_are_fetched_and_used() {
    let weights = std::fs::read(reference_dir().join("inception.pth")).unwrap();
    let files: Vec<(&str, &str, Vec<u8>)> = vec![
        ("mnist_train_images", "train-images-idx3-ubyte.gz", idx_images(24, 1)),
        ("mnist_train_labels", "train-labels-idx1-ubyte.gz", idx_labels_gz(24)),
        ("mnist_test_images", "t10k-images-idx3-ubyte.gz", idx_images(16, 5)),
        ("mnist_test_labels", "t10k-labels-idx1-ubyte.gz", idx_labels_gz(16)),
        ("pt_inception", "pt_inception.pth", weights),
    ];
    let base = serve(files.iter().map(|(_, f, b)| (format!("/{f}"), b.clone())).collect());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut toml = String::from("user_cache = \"uc\"\nthreads = 2\n");
    for (name, file, body) in &files {
        toml.push_str(&format!("[sources.{name}]\nurl = \"{base}/{file}\"\nsha256 = \"{}\"\n", sha256(body)));
    }
    std::fs::write(dir.join("difflow.toml"), toml).unwrap();
    std::fs::write(
        dir.join("first.diff"),
        "dataset digits = mnist { split = \"test\" }\n\
         dataset train_digits = mnist { split = \"train\" }\n\
         metrics scores { samples = digits, reference = train_digits, measure = [\"fid\"] }\n",
    )
    .unwrap();
    let out = Command::new(difflow_binary())
        .current_dir(dir)
        .args(["run", "first.diff", "--device", "cpu"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.matches("sha256 verified").count(), 5, "{stderr}");
    let uc = dir.join("uc");
    assert!(uc.join("datasets/mnist/t10k-images-idx3-ubyte.gz").is_file());
    assert!(uc.join("weights/pt_inception-2015-12-05-6726825d.pth").is_file());

    let lock = std::fs::read_to_string(dir.join("difflow.lock")).unwrap();
    let key = |stage: &str| -> String {
        lock.lines()
            .skip_while(|l| l.trim() != format!("[stages.{stage}]"))
            .find_map(|l| l.trim().strip_prefix("key = ").map(|k| k.trim_matches('"').to_string()))
            .unwrap_or_else(|| panic!("no key for {stage} in {lock}"))
    };
    let cache = dir.join(".difflow/cache");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join(key("digits")).join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["count"], 16, "{meta}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join(key("scores")).join("metrics.json")).unwrap())
            .unwrap();
    let fid = metrics["fid"].as_f64().unwrap();
    assert!(fid.is_finite() && fid > 0.0, "{metrics}");
}
