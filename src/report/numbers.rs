//! The headline numbers of a cache entry that a reader of a report needs: its metrics, and
//! for a trained model the steps it ran, its final loss and (a classifier) its held-out
//! accuracy, without which an accuracy it judges cannot be read.

use std::collections::BTreeMap;
use std::path::Path;

use difflow_core::files::{read_text, Purpose};

use crate::cache::lockfile::headline_metrics;
use crate::cache::Manifest;

/// The kinds whose entry is a trained model.
pub fn is_model(kind: &str) -> bool {
    matches!(kind, "train" | "classifier" | "pretrained")
}

/// An entry's manifest, when it is there and reads.
pub fn manifest(dir: &Path) -> Option<Manifest> {
    let text = read_text(&dir.join(crate::cache::store::MANIFEST), Purpose::Metadata).ok()?;
    toml::from_str(&text).ok()
}

/// An entry's numbers by name: `metrics.json` (else what its worker reported), and from a
/// model's `meta.json` `steps`, `final_loss` and `held_out_accuracy`. `params`: the stage's
/// parameters, for the steps of a classifier (its `meta.json` does not record them).
pub fn headline_numbers(
    kind: &str,
    dir: &Path,
    params: &serde_json::Value,
    manifest: Option<&Manifest>,
) -> BTreeMap<String, f64> {
    let reported = manifest.map(|m| m.metrics.clone()).unwrap_or_default();
    let mut numbers = headline_metrics(dir, &reported);
    if !is_model(kind) {
        return numbers;
    }
    let meta: serde_json::Value = read_text(&dir.join("meta.json"), Purpose::Metadata)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let steps = meta.get("steps").or_else(|| if kind == "classifier" { params.get("steps") } else { None });
    if let Some(steps) = steps.and_then(serde_json::Value::as_f64) {
        numbers.insert("steps".into(), steps);
    }
    if let Some(loss) = meta.get("final_loss").and_then(serde_json::Value::as_f64) {
        numbers.insert("final_loss".into(), loss);
    }
    if kind == "classifier" {
        let reported = numbers.remove("accuracy");
        if let Some(accuracy) = meta.get("accuracy").and_then(serde_json::Value::as_f64).or(reported) {
            numbers.insert("held_out_accuracy".into(), accuracy);
        }
    }
    numbers
}

/// The numbers as a reader reads them: `steps 100, final loss 0.0123`.
pub fn numbers_text(numbers: &BTreeMap<String, f64>) -> String {
    // Steps first: they say how far the rest got.
    let mut shown: Vec<(&String, &f64)> = numbers.iter().collect();
    shown.sort_by_key(|(name, _)| name.as_str() != "steps");
    shown
        .iter()
        .map(|(name, x)| {
            format!("{} {}", name.replace("held_out", "held-out").replace('_', " "), super::metric_text(**x))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_models_steps_loss_and_held_out_accuracy_come_from_its_meta() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("meta.json"), json!({"steps": 100, "final_loss": 0.0625}).to_string()).unwrap();
        let train = headline_numbers("train", d.path(), &json!({"steps": 7}), None);
        assert_eq!(numbers_text(&train), "steps 100, final loss 0.0625");
        std::fs::write(d.path().join("meta.json"), json!({"accuracy": 0.8125, "classes": 10}).to_string()).unwrap();
        let judge = headline_numbers("classifier", d.path(), &json!({"steps": 20}), None);
        assert_eq!(numbers_text(&judge), "steps 20, held-out accuracy 0.8125");
        // Any other stage: its metrics alone, never its parameters.
        std::fs::write(d.path().join("metrics.json"), json!({"fid": 12.5}).to_string()).unwrap();
        assert_eq!(numbers_text(&headline_numbers("metrics", d.path(), &json!({"steps": 3}), None)), "fid 12.5000");
    }
}
