//! The report's closing sections: the recipe it came from, and where each included
//! stage's numbers come from (cache key, wall time, output digests, versions).

use std::fmt::Write as _;

use super::{escape, markdown};
use crate::cache::Manifest;
use crate::job::Input;

/// The pipeline file a report was written from, shown verbatim.
pub struct Recipe {
    pub file_name: String,
    pub source: String,
}

/// `## Recipe`: the pipeline's source text, as Markdown and HTML.
pub fn recipe(recipe: &Recipe) -> (String, String) {
    let md = format!(
        "\n## Recipe: {}\n\n{}\n",
        markdown::text(&recipe.file_name),
        markdown::block(recipe.source.trim_end())
    );
    let html = format!(
        "<h2>Recipe <small>({})</small></h2>\n<pre class=\"recipe\">{}</pre>\n",
        escape(&recipe.file_name),
        escape(recipe.source.trim_end())
    );
    (md, html)
}

/// `## Provenance`: one row per included stage from its cache entry's manifest (key,
/// wall time, the libtorch that computed it, output digests), and the versions and device
/// of this run.
pub fn provenance(members: &[(&str, &Input)], device: &str) -> (String, String) {
    let manifests: Vec<Option<Manifest>> = members
        .iter()
        .map(|(_, input)| {
            std::fs::read_to_string(input.dir.join("manifest.toml"))
                .ok()
                .and_then(|text| toml::from_str::<Manifest>(&text).ok())
        })
        .collect();
    let mut torch: Vec<&str> = manifests.iter().flatten().map(|m| m.torch.as_str()).filter(|t| !t.is_empty()).collect();
    torch.sort_unstable();
    torch.dedup();
    let torch = if torch.is_empty() { "not recorded".to_string() } else { torch.join(", ") };
    let versions = format!("difflow {}, torch {torch}, device `{device}`", env!("CARGO_PKG_VERSION"));
    let md_versions = format!(
        "difflow {}, torch {}, device {}",
        env!("CARGO_PKG_VERSION"),
        markdown::text(&torch),
        markdown::code(device)
    );
    let mut md = format!(
        "\n## Provenance\n\n{md_versions}\n\n| stage | key | wall time | torch | outputs (blake3) |\n|---|---|---|---|---|\n"
    );
    let mut html = format!(
        "<h2>Provenance</h2>\n<p>{}</p>\n<table class=\"provenance\">\n<tr><th>stage</th><th>key</th><th>wall time</th>\
         <th>torch</th><th>outputs (blake3)</th></tr>\n",
        escape(&versions)
    );
    for ((name, _), manifest) in members.iter().zip(&manifests) {
        let (key, wall, torch, outputs) = match manifest {
            Some(m) => (
                m.key.clone(),
                format!("{:.1} s", m.duration_s),
                m.torch.clone(),
                m.outputs.iter().map(|(file, o)| format!("{file} {}", o.blake3)).collect(),
            ),
            None => ("(no manifest)".to_string(), String::new(), String::new(), Vec::new()),
        };
        let md_outputs: Vec<String> = outputs.iter().map(|o| markdown::text(o)).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {wall} | {} | {} |",
            markdown::cell(&markdown::code(name)),
            markdown::cell(&markdown::code(&key)),
            markdown::text(&torch),
            md_outputs.join("<br>")
        );
        let _ = writeln!(
            html,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td class=\"name digests\">{}</td></tr>",
            escape(name),
            escape(&key),
            escape(&wall),
            escape(&torch),
            outputs.iter().map(|o| escape(o)).collect::<Vec<_>>().join("<br>")
        );
    }
    html.push_str("</table>\n");
    (md, html)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cache::store::OutputFile;

    fn entry(dir: &std::path::Path, key: &str, torch: &str) -> Input {
        std::fs::create_dir_all(dir).unwrap();
        let manifest = Manifest {
            key: key.into(),
            kind: "sample".into(),
            variant: "default".into(),
            instances: vec!["gen".into()],
            started: String::new(),
            finished: String::new(),
            duration_s: 12.34,
            params: "{}".into(),
            key_material: "{}".into(),
            inputs: BTreeMap::new(),
            metrics: BTreeMap::new(),
            outputs: [("samples.safetensors".to_string(), OutputFile { blake3: "ab12".into(), size: 3 })].into(),
            torch: torch.into(),
        };
        std::fs::write(dir.join("manifest.toml"), toml::to_string(&manifest).unwrap()).unwrap();
        Input { kind: "sample".into(), variant: "default".into(), params: serde_json::json!({}), dir: dir.into() }
    }

    #[test]
    fn provenance_names_each_entrys_key_time_digests_and_torch() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (entry(&d.path().join("a"), "k1", "2.13.0+cpu"), entry(&d.path().join("b"), "k2", ""));
        let (md, html) = provenance(&[("gen", &a), ("old", &b)], "cpu");
        let versions = format!("difflow {}, torch 2.13.0+cpu, device `cpu`", env!("CARGO_PKG_VERSION"));
        assert!(md.contains(&versions), "{md}");
        assert!(md.contains("| `gen` | `k1` | 12.3 s | 2.13.0+cpu | samples.safetensors ab12 |"), "{md}");
        assert!(md.contains("| `old` | `k2` | 12.3 s |  | samples.safetensors ab12 |"), "{md}");
        assert_eq!(html.matches("<tr>").count(), 3);
        let (md, _) = provenance(&[("old", &b)], "cuda:0");
        assert!(md.contains("torch not recorded, device `cuda:0`"), "{md}");
    }
}
