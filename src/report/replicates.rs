//! Instances that differ only by their replicate coordinates (`seed = replicate(N)`,
//! `scores[scale=2.0,replicate=1]`): pooled into one setting (`scores[scale=2.0]`) whose
//! metrics are the mean ± 95 % confidence interval over the replicates ([`stats`]). The
//! report's table and charts, the lock file and `difflow show` all pool by these rules.

use std::collections::BTreeMap;

use super::stats::{summarize, Summary};
use crate::lang::pipeline::REPLICATE_AXIS;

/// A name's coordinates, `gen[a=1,b=[2,3]]` → [("a", "1"), ("b", "[2,3]")]: commas inside
/// brackets, parentheses or braces of a value do not split.
pub fn coordinates(name: &str) -> Vec<(String, String)> {
    let Some(inner) = name.find('[').and_then(|s| name.strip_suffix(']').map(|n| &n[s + 1..])) else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter_map(|part| part.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

/// Whether a coordinate tells replicates apart (`replicate`, or `fit.replicate` where two
/// replicate axes meet).
pub fn is_replicate(coordinate: &str) -> bool {
    coordinate == REPLICATE_AXIS || coordinate.strip_suffix(REPLICATE_AXIS).is_some_and(|p| p.ends_with('.'))
}

/// The setting a replicate belongs to: its name without replicate coordinates
/// (`scores[scale=2.0,replicate=1]` → `scores[scale=2.0]`, `fit[replicate=2]` → `fit`);
/// `None` for a name with no replicate coordinate.
pub fn setting_of(name: &str) -> Option<String> {
    let coords = coordinates(name);
    if !coords.iter().any(|(k, _)| is_replicate(k)) {
        return None;
    }
    let base = name.split('[').next().unwrap_or(name);
    let kept: Vec<String> = coords.iter().filter(|(k, _)| !is_replicate(k)).map(|(k, v)| format!("{k}={v}")).collect();
    Some(if kept.is_empty() { base.to_string() } else { format!("{base}[{}]", kept.join(",")) })
}

/// Members pooled by setting, in order of first appearance: (setting name, indices into
/// `names`). A name without replicate coordinates is a setting of its own.
pub fn pool(names: &[&str]) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let setting = setting_of(name).unwrap_or_else(|| name.to_string());
        match out.iter_mut().find(|(s, _)| *s == setting) {
            Some((_, members)) => members.push(i),
            None => out.push((setting, vec![i])),
        }
    }
    out
}

/// Each metric's summary over the members' metrics (a member without it is left out).
pub fn summaries<'m>(metrics: impl Iterator<Item = &'m BTreeMap<String, f64>> + Clone) -> BTreeMap<String, Summary> {
    let mut names: Vec<&String> = metrics.clone().flat_map(|m| m.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<f64> = metrics.clone().filter_map(|m| m.get(name).copied()).collect();
            summarize(&values).map(|s| (name.clone(), s))
        })
        .collect()
}

/// The replicated settings among `instances` (name → metrics): setting → (replicate
/// names, each metric's summary). Settings of one instance are left out.
#[allow(clippy::type_complexity)]
pub fn replicated<'m>(
    instances: impl Iterator<Item = (&'m str, &'m BTreeMap<String, f64>)>,
) -> BTreeMap<String, (Vec<String>, BTreeMap<String, Summary>)> {
    let mut by_setting: BTreeMap<String, Vec<(&str, &BTreeMap<String, f64>)>> = BTreeMap::new();
    for (name, metrics) in instances {
        if let Some(setting) = setting_of(name) {
            by_setting.entry(setting).or_default().push((name, metrics));
        }
    }
    by_setting
        .into_iter()
        .filter(|(_, members)| members.len() > 1)
        .map(|(setting, members)| {
            let names = members.iter().map(|(n, _)| n.to_string()).collect();
            (setting, (names, summaries(members.iter().map(|(_, m)| *m))))
        })
        .collect()
}

/// `0.7133 ± 0.0625` (the mean alone for a single value).
pub fn summary_text(s: &Summary) -> String {
    match s.ci95 {
        Some(h) => format!("{} ± {}", super::metric_text(s.mean), super::metric_text(h)),
        None => super::metric_text(s.mean),
    }
}

/// A summary as JSON: `{"n", "mean", "ci95", "low", "high"}` (`ci95` the half-width;
/// absent, with low = high = mean, for a single value).
pub fn summary_json(s: &Summary) -> serde_json::Value {
    let (low, high) = s.bounds();
    let mut v = serde_json::json!({ "n": s.n, "mean": s.mean, "low": low, "high": high });
    if let Some(h) = s.ci95 {
        v["ci95"] = serde_json::json!(h);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicates_pool_into_their_setting() {
        assert_eq!(setting_of("scores[scale=2.0,replicate=3]").as_deref(), Some("scores[scale=2.0]"));
        assert_eq!(setting_of("fit[replicate=2]").as_deref(), Some("fit"));
        assert_eq!(setting_of("gen[fit.replicate=1,gen.replicate=2]").as_deref(), Some("gen"));
        assert_eq!(setting_of("gen[scale=2.0]"), None);
        assert_eq!(setting_of("gen[replicates=2]"), None, "only the replicate axis pools");
        assert_eq!(
            coordinates("g[s=ddim(steps=5,eta=0),l=[1,2]]"),
            [("s".to_string(), "ddim(steps=5,eta=0)".to_string()), ("l".to_string(), "[1,2]".to_string())]
        );
        let names = ["m[w=1,replicate=1]", "m[w=2,replicate=1]", "m[w=1,replicate=2]", "other"];
        assert_eq!(
            pool(&names),
            [("m[w=1]".to_string(), vec![0, 2]), ("m[w=2]".to_string(), vec![1]), ("other".to_string(), vec![3])]
        );
    }

    #[test]
    fn replicated_settings_carry_mean_and_interval() {
        let metric = |x: f64| BTreeMap::from([("accuracy".to_string(), x)]);
        let ms = [metric(0.71), metric(0.69), metric(0.74), metric(0.5)];
        let names = ["m[replicate=1]", "m[replicate=2]", "m[replicate=3]", "plain"];
        let out = replicated(names.iter().copied().zip(ms.iter()));
        assert_eq!(out.keys().collect::<Vec<_>>(), ["m"]);
        let (members, summaries) = &out["m"];
        assert_eq!(members.len(), 3);
        let s = summaries["accuracy"];
        assert!((s.ci95.unwrap() - 0.062_516_094_793_757_8).abs() < 1e-9);
        assert_eq!(summary_text(&s), "0.7133 ± 0.0625");
        let j = summary_json(&s);
        assert_eq!(j["n"], 3);
        assert!((j["low"].as_f64().unwrap() - (s.mean - 0.062_516_094_793_757_8)).abs() < 1e-9);
    }
}
