//! Metrics from a `.diff` file through the real `difflow` binary and worker: FID, KID,
//! precision/recall and IS of one image set against another, with the feature statistics
//! of each input in a cache entry of its own. Changing only the samples side reruns the
//! samples' statistics and the metrics, never the reference's statistics.
//! Uses the seeded Inception weights of `scripts/inception_reference.py`.

mod common;
mod inception_fixture;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::difflow_binary;
use inception_fixture::reference_dir;

/// Writes `count` size×size RGB PNGs: smooth blobs, brighter when `bright`.
fn write_images(dir: &Path, count: usize, size: u32, bright: bool, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64) / (1u64 << 31) as f64
    };
    for i in 0..count {
        let (cx, cy, r) = (next() * size as f64, next() * size as f64, 2.0 + next() * size as f64 / 2.0);
        let tint = [next(), next(), next()];
        let img = image::RgbImage::from_fn(size, size, |x, y| {
            let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
            let v = (1.0 - d / r).clamp(0.0, 1.0);
            let base = if bright { 0.5 } else { 0.0 };
            let px = |c: usize| ((base + v * tint[c]).min(1.0) * 255.0) as u8;
            image::Rgb([px(0), px(1), px(2)])
        });
        img.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
}

fn run(difflow: &Path, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(difflow).current_dir(dir).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "difflow {args:?} failed:\n{text}");
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every cache entry's manifest, by key.
fn manifests(cache: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(cache).unwrap().flatten() {
        let manifest = entry.path().join("manifest.toml");
        if manifest.exists() {
            out.insert(entry.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(manifest).unwrap());
        }
    }
    out
}

fn pipeline(fake_limit: usize) -> String {
    format!(
        r#"dataset real = images {{ path = "real", size = 16, channels = 3 }}
dataset fake = images {{ path = "fake", size = 16, channels = 3, limit = {fake_limit} }}

metrics scores {{
    samples   = fake
    reference = real
    measure   = ["fid", "kid", "precision", "recall", "is"]
}}
"#
    )
}

#[test]
fn statistics_are_cached_per_input_and_reused() {
    let difflow = difflow_binary();
    let weights = reference_dir().join("inception.pth");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_images(&dir.join("real"), 10, 16, false, 1);
    write_images(&dir.join("fake"), 12, 16, true, 2);
    std::fs::write(dir.join("difflow.toml"), format!("inception_weights = \"{}\"\nthreads = 2\n", weights.display()))
        .unwrap();
    std::fs::write(dir.join("study.diff"), pipeline(10)).unwrap();

    let first = stdout(&run(&difflow, dir, &["run", "study.diff", "--device", "cpu"]));
    assert!(first.contains("stats(real, inception)") && first.contains("stats(fake, inception)"), "{first}");
    let cache = dir.join(".difflow/cache");
    let before = manifests(&cache);
    let metrics_file = |dir: &Path| -> serde_json::Value {
        let lock = std::fs::read_to_string(dir.join("difflow.lock")).unwrap();
        let key = lock
            .lines()
            .skip_while(|l| !l.contains("scores"))
            .find_map(|l| l.trim().strip_prefix("key = ").map(|k| k.trim_matches('"').to_string()))
            .expect("the metrics stage's key in difflow.lock");
        let text = std::fs::read_to_string(dir.join(".difflow/cache").join(key).join("metrics.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let m1 = metrics_file(dir);
    assert_eq!(m1["count"], 10);
    let fid1 = m1["fid"].as_f64().unwrap();
    assert!(fid1 > 0.0, "{m1}");
    for key in ["kid_mean", "kid_std", "precision", "recall", "is_mean", "is_std"] {
        assert!(m1[key].as_f64().is_some_and(f64::is_finite), "{key} missing in {m1}");
    }
    assert!(m1["is_mean"].as_f64().unwrap() >= 1.0);

    // Only the samples side changes: the reference's statistics stay cached.
    std::fs::write(dir.join("study.diff"), pipeline(11)).unwrap();
    let plan = stdout(&run(&difflow, dir, &["plan", "study.diff"]));
    let line = |name: &str| plan.lines().find(|l| l.contains(name)).unwrap_or_default().to_string();
    assert!(line("stats(real, inception)").trim_start().starts_with("cached"), "{plan}");
    assert!(line("real ").trim_start().starts_with("cached"), "{plan}");
    assert!(!line("stats(fake, inception)").trim_start().starts_with("cached"), "{plan}");
    let second = stdout(&run(&difflow, dir, &["run", "study.diff", "--device", "cpu"]));
    assert!(!second.contains("stats(real, inception) ("), "the reference statistics were recomputed:\n{second}");
    assert!(second.contains("stats(fake, inception)"), "{second}");
    let after = manifests(&cache);
    for (key, manifest) in &before {
        if manifest.contains("stats(real, inception)") || manifest.contains("kind = \"stats\"") {
            // Entries are never rewritten in place.
            assert_eq!(after.get(key), Some(manifest), "entry {key} changed");
        }
    }
    assert_eq!(after.len(), before.len() + 3, "new entries: fake data, its statistics, the metrics");
    let m2 = metrics_file(dir);
    assert_eq!(m2["count"], 11);
    assert!(m2["fid"].as_f64().unwrap() != fid1);

    // Unchanged pipeline: nothing runs.
    let third = stdout(&run(&difflow, dir, &["run", "study.diff", "--device", "cpu"]));
    assert!(third.contains("nothing to do"), "{third}");
}
