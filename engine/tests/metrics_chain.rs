//! Classifier metrics, metrics along the sampling chain, the `curve` plot and the `nll`
//! stage, from a `.diff` file through the real `difflow` binary and worker, on 8×8 MNIST
//! with tiny networks (a few seconds of training). Features come from a trained classifier
//! stage ("classifier FID"), so no Inception weights are needed here.

mod common;
mod inception_fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::difflow_binary;
use inception_fixture::repo_root;

fn pipeline(mnist: &Path) -> String {
    let mnist = mnist.display();
    format!(
        r#"dataset digits = mnist {{ path = "{mnist}", split = "train", size = 8, limit = 200 }}
dataset digits_test = mnist {{ path = "{mnist}", split = "test", size = 8, limit = 20 }}

schedule cos = cosine {{ steps = 20 }}

model tiny = unet {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [], classes = 10, learn_sigma = true }}

train fit {{ model = tiny, data = digits, schedule = cos, loss = "hybrid", steps = 30, batch = 32, lr = 1e-3 }}
train fit_fixed {{
    model = unet {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [] }}
    data = digits
    schedule = cos
    steps = 30
    batch = 32
    lr = 1e-3
}}

classifier judge {{
    model = encoder {{ channels = 8, mults = [1, 2], res_blocks = 1, attention = [] }}
    data = digits
    steps = 60
    batch = 32
    lr = 2e-3
}}

sample gen {{ from = fit, sampler = ddpm {{ variance = "learned" }}, count = 20, trajectory = 5 }}

metrics scores {{
    samples = gen
    reference = digits_test
    features = judge
    measure = ["fid", "kid", "precision", "recall", "accuracy"]
}}

nll learned {{ from = fit, data = digits_test, count = 20, batch = 8 }}
nll fixed {{ from = fit_fixed, data = digits_test, count = 20 }}

plot chain = curve {{ of = gen, y = "fid", reference = digits_test, features = judge }}
"#
    )
}

fn entry(dir: &Path, stage: &str) -> PathBuf {
    let lock = std::fs::read_to_string(dir.join("difflow.lock")).unwrap();
    let header = format!("[stages.{stage}]");
    let key = lock
        .lines()
        .skip_while(|l| l.trim() != header)
        .find_map(|l| l.trim().strip_prefix("key = ").map(|k| k.trim_matches('"').to_string()))
        .unwrap_or_else(|| panic!("no key for {stage} in difflow.lock:\n{lock}"));
    dir.join(".difflow/cache").join(key)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn classifier_metrics_chain_curve_and_nll() {
    let difflow = difflow_binary();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("chain.diff"), pipeline(&repo_root().join("data/mnist"))).unwrap();
    std::fs::write(dir.join("difflow.toml"), "threads = 2\n").unwrap();
    let out = Command::new(&difflow).current_dir(dir).args(["run", "chain.diff", "--device", "cpu"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "difflow run failed:\n{text}");

    let m = json(&entry(dir, "scores").join("metrics.json"));
    assert_eq!(m["count"], 20);
    let fid = m["fid"].as_f64().unwrap();
    assert!(fid.is_finite() && fid >= 0.0, "{m}");
    let accuracy = m["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    let per_class = m["per_class_accuracy"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    // "all" cycles the 10 classes over 20 samples: 2 per class, so the overall accuracy is
    // the mean of the per-class accuracies.
    let mean: f64 = per_class.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 10.0;
    assert!((mean - accuracy).abs() < 1e-12, "{m}");
    for key in ["kid_mean", "precision", "recall"] {
        assert!(m[key].as_f64().is_some(), "{key} missing: {m}");
    }
    // 20 steps, every 5th kept: x̂₀ after 0, 5, 10 and 15 steps.
    let trajectory = m["trajectory"].as_array().unwrap();
    let steps: Vec<i64> = trajectory.iter().map(|p| p["step"].as_i64().unwrap()).collect();
    assert_eq!(steps, [0, 5, 10, 15]);
    let ts: Vec<i64> = trajectory.iter().map(|p| p["t"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] > w[1]), "timesteps fall along the chain: {ts:?}");
    assert!(trajectory.iter().all(|p| p["fid"].as_f64().is_some_and(f64::is_finite)));

    // The curve plot measures the same points with the same extractor and reference.
    let chain = entry(dir, "chain");
    assert!(chain.join("plot.png").exists());
    let curve = json(&chain.join("curve.json"));
    for (a, b) in curve["trajectory"].as_array().unwrap().iter().zip(trajectory) {
        let (x, y) = (a["fid"].as_f64().unwrap(), b["fid"].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-9 * y.abs().max(1e-12), "curve {x} vs metrics {y}");
    }

    // NLL: all 20 terms plus the prior add up to the reported bits/dim, for learned and
    // fixed variance.
    for (stage, variance) in [("learned", "learned"), ("fixed", "fixed_large")] {
        let n = json(&entry(dir, stage).join("metrics.json"));
        assert_eq!(n["variance"], variance);
        assert_eq!(n["count"], 20);
        let bpd = n["bpd"].as_f64().unwrap();
        let terms: Vec<f64> = n["terms_bpd"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(terms.len(), 20);
        let sum = terms.iter().sum::<f64>() + n["prior_bpd"].as_f64().unwrap();
        assert!((sum - bpd).abs() < 1e-4 * bpd, "{stage}: terms {sum} vs bpd {bpd}");
        // An 8-bit image costs at most 8 bits/dim under a sane model; an untrained one is
        // worse but the bound stays positive and finite.
        assert!(bpd > 0.0 && bpd.is_finite(), "{stage}: {n}");
        assert!(terms[0] == n["decoder_bpd"].as_f64().unwrap());
    }
}
