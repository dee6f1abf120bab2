//! Training runs that grow. The state of a training run after k steps does not depend on
//! how many steps were asked for in total: the learning rate only warms up, and every
//! step draws its batch and noise from (seed, step). So two `train` stages whose key
//! material differs only in `steps` (or `epochs`) are one *lineage*, and the longer run
//! can continue from the shorter one's cache entry (weights, EMA, optimiser moments and
//! loss log are all in it) with a result bit-identical to training from scratch.
//!
//! The rule: `steps` and `epochs` are out of the lineage unless an option that makes
//! training depend on the total (a decaying learning-rate schedule would) is set; such an
//! option goes into [`TOTAL_DEPENDENT_OPTIONS`], and its runs then never continue
//! one another. They stay in the stage key either way: the final weights of 10,000 and
//! 20,000 steps are different results.

use serde_json::{json, Value as Json};

use super::key::hash_material;
use super::store::Cache;

/// The kind whose runs continue one another.
pub const TRAIN_KIND: &str = "train";

/// `train` options whose value makes the state after k steps depend on the total number
/// of steps. None today: `warmup` only ever raises the learning rate, the EMA warm-up
/// counts steps taken.
pub const TOTAL_DEPENDENT_OPTIONS: &[&str] = &[];

/// The lineage of a stage's key material (`None`: not a training run, or one whose
/// training depends on its total).
pub fn lineage(material: &Json) -> Option<String> {
    lineage_with(material, TOTAL_DEPENDENT_OPTIONS)
}

/// [`lineage`] with the given options counted as total-dependent.
pub fn lineage_with(material: &Json, total_dependent: &[&str]) -> Option<String> {
    if material.get("kind").and_then(Json::as_str) != Some(TRAIN_KIND) {
        return None;
    }
    let params = material.get("params")?.as_object()?;
    if total_dependent.iter().any(|o| params.get(*o).is_some_and(|v| !v.is_null())) {
        return None;
    }
    let mut params = params.clone();
    params.remove("steps");
    params.remove("epochs");
    let mut lineage = material.clone();
    lineage["params"] = Json::Object(params);
    Some(hash_material(&json!({ "lineage": lineage })))
}

/// The number of steps key material asks for, when it says so directly (`steps`).
pub fn material_steps(material: &Json) -> Option<u64> {
    material.get("params")?.get("steps")?.as_u64()
}

/// A complete cached training run.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRun {
    pub key: String,
    pub steps: u64,
}

/// Every complete cached run of `lineage`, fewest steps first. Runs asked for in epochs
/// count the steps their `meta.json` records.
pub fn cached_runs(cache: &Cache, lineage_key: &str) -> Vec<CachedRun> {
    let mut out = Vec::new();
    for key in cache.keys().unwrap_or_default() {
        let Some(m) = cache.manifest(&key) else { continue };
        if m.kind != TRAIN_KIND {
            continue;
        }
        let Ok(material) = serde_json::from_str::<Json>(&m.key_material) else { continue };
        if lineage(&material).as_deref() != Some(lineage_key) {
            continue;
        }
        let steps = material_steps(&material).or_else(|| meta_steps(&cache.entry_dir(&key)));
        if let Some(steps) = steps {
            out.push(CachedRun { key, steps });
        }
    }
    out.sort_by_key(|r| r.steps);
    out
}

fn meta_steps(dir: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("meta.json")).ok()?;
    serde_json::from_str::<Json>(&text).ok()?.get("steps")?.as_u64()
}

/// The run to continue from to reach `target` steps: the longest one short of it.
pub fn start_point(runs: &[CachedRun], target: u64) -> Option<&CachedRun> {
    runs.iter().filter(|r| r.steps < target).max_by_key(|r| r.steps)
}

/// `12345` as `12,345`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(steps: u64, lr: f64) -> Json {
        json!({"kind": "train", "variant": "diffusion", "version": 1,
               "params": {"steps": steps, "lr": lr, "data": {"$stage": "ab"}, "warmup": 10}})
    }

    #[test]
    fn steps_are_out_of_the_lineage_but_in_the_key() {
        assert_eq!(lineage(&train(100, 1e-3)), lineage(&train(200, 1e-3)));
        assert_ne!(hash_material(&train(100, 1e-3)), hash_material(&train(200, 1e-3)));
        assert_ne!(lineage(&train(100, 1e-3)), lineage(&train(100, 2e-3)));
        let mut epochs = train(0, 1e-3);
        epochs["params"].as_object_mut().unwrap().remove("steps");
        epochs["params"]["epochs"] = json!(3);
        assert_eq!(lineage(&epochs), lineage(&train(100, 1e-3)));
    }

    #[test]
    fn an_option_that_depends_on_the_total_puts_steps_back() {
        let mut decaying = train(100, 1e-3);
        decaying["params"]["lr_decay"] = json!("cosine");
        assert!(lineage_with(&decaying, &["lr_decay"]).is_none());
        // Unset (null) it changes nothing.
        let mut unset = train(100, 1e-3);
        unset["params"]["lr_decay"] = Json::Null;
        assert!(lineage_with(&unset, &["lr_decay"]).is_some());
        // Today no option does, so every train stage has a lineage.
        assert!(lineage(&decaying).is_some());
    }

    #[test]
    fn other_kinds_have_no_lineage() {
        let mut c = train(100, 1e-3);
        c["kind"] = json!("classifier");
        assert_eq!(lineage(&c), None);
    }

    #[test]
    fn continues_from_the_longest_run_short_of_the_target() {
        let runs = [10, 20, 40].map(|steps| CachedRun { key: format!("k{steps}"), steps });
        assert_eq!(start_point(&runs, 30).unwrap().steps, 20);
        assert_eq!(start_point(&runs, 100).unwrap().steps, 40);
        assert_eq!(start_point(&runs, 20).unwrap().steps, 10);
        assert_eq!(start_point(&runs, 10), None);
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(35_746_307), "35,746,307");
    }
}
