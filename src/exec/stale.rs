//! Why a stage is stale: the difference between the key material of its previous entry and
//! the current one, in the words of the pipeline ("sampler.steps 50 → 100", "input `ddpm`
//! changed").

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::lang::pipeline::Instance;
use crate::lang::value::Value;

/// `names_by_key`: upstream key → the instance name it belongs to now.
pub fn explain(old: &Json, new: &Json, inst: &Instance, names_by_key: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for field in ["kind", "variant"] {
        if old.get(field) != new.get(field) {
            out.push(format!("{field} {} → {}", show(old.get(field)), show(new.get(field))));
            return out;
        }
    }
    if old.get("version") != new.get("version") {
        out.push(format!(
            "the `{}` implementation changed (version {} → {})",
            inst.kind,
            show(old.get("version")),
            show(new.get("version"))
        ));
    }
    explain_recipe(old.get("recipe"), new.get("recipe"), &mut out);
    let ctx = Ctx { inst, names_by_key };
    let empty = Json::Object(Default::default());
    ctx.diff("", old.get("params").unwrap_or(&empty), new.get("params").unwrap_or(&empty), &mut out);
    if out.is_empty() {
        out.push("its key changed".into());
    }
    out
}

/// A report's recipe: the pipeline's text, and the `--set`s it was run with.
fn explain_recipe(old: Option<&Json>, new: Option<&Json>, out: &mut Vec<String>) {
    let field = |recipe: Option<&Json>, name: &str| recipe.and_then(|r| r.get(name)).cloned();
    if field(old, "text") != field(new, "text") {
        out.push("the pipeline's text changed (the report shows it)".into());
    }
    if field(old, "set") != field(new, "set") {
        let sets = |recipe: Option<&Json>| {
            let given: Vec<String> = field(recipe, "set")
                .and_then(|s| s.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.as_str().map(|s| format!("--set {s}")))
                .collect();
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(" ")
            }
        };
        out.push(format!("`--set`s {} → {}", sets(old), sets(new)));
    }
}

struct Ctx<'a> {
    inst: &'a Instance,
    names_by_key: &'a HashMap<String, String>,
}

impl Ctx<'_> {
    fn diff(&self, path: &str, old: &Json, new: &Json, out: &mut Vec<String>) {
        if old == new {
            return;
        }
        let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
        match (old, new) {
            (Json::Object(a), Json::Object(b)) if b.contains_key("$stage") && a.contains_key("$stage") => {
                let key = b["$stage"].as_str().unwrap_or_default();
                let name = self.names_by_key.get(key).cloned().unwrap_or_else(|| path.to_string());
                out.push(format!("input `{name}` changed"));
            }
            (Json::Object(a), Json::Object(b))
                if (a.contains_key("$file") || a.contains_key("$missing"))
                    && (b.contains_key("$file") || b.contains_key("$missing")) =>
            {
                let shown = self.path_value(path).unwrap_or_else(|| path.to_string());
                if b.contains_key("$missing") {
                    out.push(format!("`{path}` {shown} no longer exists"));
                } else {
                    out.push(format!("the contents of `{path}` {shown} changed"));
                }
            }
            (Json::Object(a), Json::Object(b)) => {
                if a.get("variant") != b.get("variant") && (a.contains_key("kind") || b.contains_key("kind")) {
                    let variant = |m: &serde_json::Map<String, Json>| {
                        m.get("variant").and_then(Json::as_str).unwrap_or("?").to_string()
                    };
                    out.push(format!("{path} {} → {}", variant(a), variant(b)));
                    return;
                }
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    match (a.get(k), b.get(k)) {
                        (Some(x), Some(y)) => self.diff(&join(k), x, y, out),
                        (None, Some(y)) => out.push(format!("{} set to {}", join(k), show(Some(y)))),
                        (Some(x), None) => out.push(format!("{} removed (was {})", join(k), show(Some(x)))),
                        (None, None) => {}
                    }
                }
            }
            (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    self.diff(&format!("{path}[{i}]"), x, y, out);
                }
            }
            (Json::Array(a), Json::Array(b)) if has_refs(old) || has_refs(new) => {
                out.push(format!("`{path}` reads {} inputs instead of {}", b.len(), a.len()));
            }
            _ => out.push(format!("{path} {} → {}", show(Some(old)), show(Some(new)))),
        }
    }

    /// How the current pipeline writes the path at a dotted position of the params.
    fn path_value(&self, dotted: &str) -> Option<String> {
        let mut parts = dotted.split('.');
        let mut v = self.inst.params.get(parts.next()?)?;
        for p in parts {
            v = match v {
                Value::Config(c) => c.params.get(p)?,
                _ => return None,
            };
        }
        match v {
            Value::Path(p) => Some(format!("({p})")),
            _ => None,
        }
    }
}

fn has_refs(v: &Json) -> bool {
    match v {
        Json::Object(m) => m.contains_key("$stage") || m.values().any(has_refs),
        Json::Array(items) => items.iter().any(has_refs),
        _ => false,
    }
}

fn show(v: Option<&Json>) -> String {
    match v {
        None => "(none)".into(),
        Some(Json::Object(m)) if m.contains_key("variant") => m["variant"].as_str().unwrap_or("?").to_string(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inst() -> Instance {
        crate::graph::tests::inst("gen", "sample", "default", vec![])
    }

    fn material(params: Json) -> Json {
        json!({"kind": "sample", "variant": "default", "version": 1, "params": params})
    }

    #[test]
    fn names_the_changed_config_key_with_old_and_new_values() {
        let old =
            material(json!({"sampler": {"kind": "sampler", "variant": "ddim", "steps": 50, "eta": 0.0}, "count": 8}));
        let new =
            material(json!({"sampler": {"kind": "sampler", "variant": "ddim", "steps": 100, "eta": 0.0}, "count": 8}));
        assert_eq!(explain(&old, &new, &inst(), &HashMap::new()), ["sampler.steps 50 → 100"]);
    }

    #[test]
    fn a_reports_changed_text_and_sets_are_named() {
        let report = |text: &str, sets: Json| json!({"kind": "report", "variant": "default", "version": 1, "params": {}, "recipe": {"text": text, "set": sets}});
        let (old, new) = (report("t1", json!([])), report("t2", json!(["steps=100"])));
        assert_eq!(
            explain(&old, &new, &inst(), &HashMap::new()),
            ["the pipeline's text changed (the report shows it)", "`--set`s none → --set steps=100"]
        );
    }

    #[test]
    fn a_changed_variant_is_reported_once() {
        let old = material(json!({"sampler": {"kind": "sampler", "variant": "ddim", "steps": 50, "eta": 0.0}}));
        let new = material(json!({"sampler": {"kind": "sampler", "variant": "ddpm", "steps": 50, "variance": "x"}}));
        assert_eq!(explain(&old, &new, &inst(), &HashMap::new()), ["sampler ddim → ddpm"]);
    }

    #[test]
    fn a_changed_input_is_named() {
        let old = material(json!({"from": {"$stage": "k1"}}));
        let new = material(json!({"from": {"$stage": "k2"}}));
        let names = [("k2".to_string(), "ddpm".to_string())].into_iter().collect();
        assert_eq!(explain(&old, &new, &inst(), &names), ["input `ddpm` changed"]);
    }

    #[test]
    fn version_and_added_keys() {
        let old = json!({"kind": "sample", "variant": "default", "version": 1, "params": {"a": 1}});
        let new = json!({"kind": "sample", "variant": "default", "version": 2, "params": {"a": 1, "b": "x"}});
        assert_eq!(
            explain(&old, &new, &inst(), &HashMap::new()),
            ["the `sample` implementation changed (version 1 → 2)", "b set to \"x\""]
        );
    }
}
