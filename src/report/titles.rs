//! What the report's figures call things: a sweep axis by the schema's display title of the
//! key it sweeps ("guidance strength w", not `scale`), and a metric by its measure's title
//! with the features it was computed on and which way is better.

use std::collections::BTreeMap;

use crate::job::Input;
use crate::lang::pipeline::Pipeline;
use crate::lang::value::Value;
use difflow_core::params::measure::{reading_of, Better};

/// A sweep axis's name (`scale`) → what a reader calls it (`guidance strength w`).
pub type AxisTitles = BTreeMap<String, String>;

/// The display title of each sweep axis of `pipeline` that has one: the title of the key
/// whose value is the swept value in an instance the axis picks out (`gen[scale=2.0]` holds
/// `guidance = cfg { scale = 2.0 }`, so `scale` is cfg's "guidance strength w"; the
/// downstream `scores[scale=2.0]` holds no `scale` and says nothing).
pub fn axis_titles(pipeline: &Pipeline) -> AxisTitles {
    let mut titles = AxisTitles::new();
    for inst in &pipeline.instances {
        for (axis, value) in &inst.sweep {
            if titles.contains_key(axis) {
                continue;
            }
            if let Some(title) = key_title(&inst.kind, &inst.variant, &inst.params, axis, value) {
                titles.insert(axis.clone(), title.to_string());
            }
        }
    }
    // A key the graph rewrites (a swept `step = K` becomes a reference to the snapshot
    // `ddpm@K`) no longer holds its value: the stage's own key of the axis's name names it,
    // unless the stage holds that key with another value (a train stage's `steps` beside a
    // swept schedule's `steps`).
    for inst in &pipeline.instances {
        for (axis, _) in &inst.sweep {
            if !titles.contains_key(axis) && !inst.params.contains_key(axis) {
                if let Some(title) = difflow_core::schema::key(&inst.kind, &inst.variant, axis).and_then(|k| k.title) {
                    titles.insert(axis.clone(), title.to_string());
                }
            }
        }
    }
    titles
}

/// The title of `axis` in these params (or in a config inside them) where it holds `value`.
fn key_title(
    kind: &str,
    variant: &str,
    params: &BTreeMap<String, Value>,
    axis: &str,
    value: &Value,
) -> Option<&'static str> {
    if params.get(axis) == Some(value) {
        if let Some(spec) = difflow_core::schema::key(kind, variant, axis) {
            return spec.title;
        }
    }
    params.values().find_map(|v| match v {
        Value::Config(c) => key_title(&c.kind, &c.variant, &c.params, axis, value),
        _ => None,
    })
}

/// The title of an axis, its name where the pipeline gives none.
pub fn axis_title<'a>(titles: &'a AxisTitles, axis: &'a str) -> &'a str {
    titles.get(axis).map_or(axis, String::as_str)
}

/// `scale=2.0, steps=10` as a reader reads it: `guidance strength w = 2.0, steps = 10`.
pub fn coordinates_title(titles: &AxisTitles, coords: &[(String, String)]) -> String {
    let parts: Vec<String> = coords.iter().map(|(k, v)| format!("{} = {v}", axis_title(titles, k))).collect();
    parts.join(", ")
}

/// A metric's name for a chart axis: `FID (classifier features, lower is better)`. The
/// features are those of the family's members when they agree.
pub fn metric_title(metric: &str, members: &[(&str, &Input)]) -> String {
    let Some(measure) = reading_of(metric) else { return metric.to_string() };
    let mut notes = Vec::new();
    if measure.on_features {
        let features: Vec<String> = members.iter().map(|(_, input)| features_of(input)).collect();
        if let Some(first) = features.first().filter(|f| !f.is_empty() && features.iter().all(|x| x == *f)) {
            notes.push(first.clone());
        }
    }
    notes.push(
        match measure.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        }
        .to_string(),
    );
    // `kid_mean` keeps its suffix's meaning in the title.
    let title = if metric.ends_with("_mean") { format!("{} (mean)", measure.title) } else { measure.title.to_string() };
    format!("{title} ({})", notes.join(", "))
}

/// Which features a metrics stage compared: a classifier stage's or Inception's.
fn features_of(input: &Input) -> String {
    match input.params.get("features") {
        Some(serde_json::Value::Object(m)) if m.contains_key("$stage") => "classifier features".into(),
        Some(serde_json::Value::String(s)) if s == "inception" => "Inception features".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics_input(features: serde_json::Value) -> Input {
        Input {
            kind: "metrics".into(),
            variant: "default".into(),
            params: json!({ "features": features }),
            dir: Default::default(),
        }
    }

    #[test]
    fn a_metric_says_its_features_and_which_way_is_better() {
        let judged = metrics_input(json!({"$stage": "judge"}));
        let members = [("scores[scale=0.0]", &judged), ("scores[scale=2.0]", &judged)];
        assert_eq!(metric_title("fid", &members), "FID (classifier features, lower is better)");
        assert_eq!(metric_title("accuracy", &members), "accuracy (higher is better)");
        let inception = metrics_input(json!("inception"));
        assert_eq!(metric_title("fid", &[("a", &inception)]), "FID (Inception features, lower is better)");
        assert_eq!(metric_title("fid", &[("a", &inception), ("b", &judged)]), "FID (lower is better)");
        assert_eq!(metric_title("kid_mean", &[("a", &inception)]), "KID (mean) (Inception features, lower is better)");
        assert_eq!(metric_title("count", &members), "count");
    }

    #[test]
    fn a_sweep_axis_takes_the_title_of_the_key_it_sweeps() {
        let src = "dataset d = toy { shape = \"gaussians8\", count = 256 }\n\
                   schedule s = linear { steps = 50 }\n\
                   model m = mlp { classes = 8 }\n\
                   train t = diffusion { model = m, data = d, schedule = s, steps = 5, batch = 8, uncond_p = 0.1 }\n\
                   sample gen { from = t, sampler = ddim { steps = 10 }, guidance = cfg { scale = sweep(0.0, 2.0) }, count = 8 }\n\
                   plot pic = scatter { of = [gen] }\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.diff");
        std::fs::write(&file, src).unwrap();
        let loaded = crate::lang::load(&file, &[]);
        let pipeline = loaded.pipeline.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
        let titles = axis_titles(&pipeline);
        assert_eq!(titles.get("scale").map(String::as_str), Some("guidance strength w"), "{titles:?}");
        assert_eq!(
            coordinates_title(&titles, &[("scale".into(), "2.0".into()), ("k".into(), "1".into())]),
            "guidance strength w = 2.0, k = 1"
        );
    }
}
