//! The report's closing sections: the recipe it came from, and where each included
//! stage's numbers come from (cache key, wall time, output digests, versions).

use std::fmt::Write as _;

use super::escape;
use crate::cache::Manifest;
use crate::job::Input;

/// The pipeline file a report was written from, shown verbatim.
pub struct Recipe {
    pub file_name: String,
    pub source: String,
}

/// `## Recipe`: the pipeline's source text, as Markdown and HTML.
pub fn recipe(recipe: &Recipe) -> (String, String) {
    let md = format!("\n## Recipe: {}\n\n```\n{}\n```\n", recipe.file_name, recipe.source.trim_end());
    let html = format!(
        "<h2>Recipe <small>({})</small></h2>\n<pre class=\"recipe\">{}</pre>\n",
        escape(&recipe.file_name),
        escape(recipe.source.trim_end())
    );
    (md, html)
}

/// `## Provenance`: one row per included stage from its cache entry's manifest, and the
/// versions and device of this run.
pub fn provenance(members: &[(&str, &Input)], device: &str) -> (String, String) {
    let versions = format!("difflow {}, device `{device}`", env!("CARGO_PKG_VERSION"));
    let mut md =
        format!("\n## Provenance\n\n{versions}\n\n| stage | key | wall time | outputs (blake3) |\n|---|---|---|---|\n");
    let mut html = format!(
        "<h2>Provenance</h2>\n<p>{}</p>\n<table class=\"provenance\">\n<tr><th>stage</th><th>key</th><th>wall time</th><th>outputs (blake3)</th></tr>\n",
        escape(&versions)
    );
    for (name, input) in members {
        let manifest = std::fs::read_to_string(input.dir.join("manifest.toml"))
            .ok()
            .and_then(|text| toml::from_str::<Manifest>(&text).ok());
        let (key, wall, outputs) = match &manifest {
            Some(m) => (
                m.key.clone(),
                format!("{:.1} s", m.duration_s),
                m.outputs.iter().map(|(file, o)| format!("{file} {}", o.blake3)).collect(),
            ),
            None => ("(no manifest)".to_string(), String::new(), Vec::new()),
        };
        let _ = writeln!(md, "| `{name}` | `{key}` | {wall} | {} |", outputs.join("<br>"));
        let _ = writeln!(
            html,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td class=\"name\">{}</td></tr>",
            escape(name),
            escape(&key),
            escape(&wall),
            outputs.iter().map(|o| escape(o)).collect::<Vec<_>>().join("<br>")
        );
    }
    html.push_str("</table>\n");
    (md, html)
}
