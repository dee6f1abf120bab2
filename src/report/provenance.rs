//! The report's closing sections: the recipe it came from (the values every stage it
//! depends on ran with, the `--set`s, the pipeline's text), and where each of those
//! stages' numbers come from (headline numbers, wall time, device, threads, versions,
//! cache key, output digests).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::numbers::{headline_numbers, manifest, numbers_text};
use super::{escape, markdown};
use crate::cache::Manifest;
use crate::job::Input;

/// What a report was written from, beside its job.
#[derive(Debug, Clone, Default)]
pub struct Recipe {
    /// The pipeline file's name.
    pub file_name: String,
    /// Its text, as it was loaded.
    pub source: String,
    /// The files on disk it `use`s: (name, text).
    pub used_files: Vec<(String, String)>,
    /// `--set NAME=VALUE` as given.
    pub sets: Vec<String>,
    /// Every stage the report depends on, directly or not, in the order they ran.
    pub upstream: Vec<Upstream>,
}

/// A stage a report depends on.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: String,
    pub variant: String,
    /// Every key it ran with (after `let`s, presets, `--set`s and defaults), as the
    /// language writes the value.
    pub values: Vec<(String, String)>,
    /// Its parameters as its job got them (JSON).
    pub params: serde_json::Value,
    /// A stage the pipeline does not write (shared feature statistics).
    pub hidden: bool,
    /// Its cache entry.
    pub dir: PathBuf,
}

/// `## Recipe`: the `--set`s, the values of every stage upstream, and the pipeline's text.
pub fn recipe(recipe: &Recipe) -> (String, String) {
    let sets_md: Vec<String> = recipe.sets.iter().map(|s| markdown::code(&format!("--set {s}"))).collect();
    let sets_html: Vec<String> = recipe.sets.iter().map(|s| format!("<code>--set {}</code>", escape(s))).collect();
    let (run_md, run_html) = if recipe.sets.is_empty() {
        ("Run without `--set`.".to_string(), "Run without <code>--set</code>.".to_string())
    } else {
        (format!("Run with {}.", sets_md.join(" ")), format!("Run with {}.", sets_html.join(" ")))
    };
    let values = effective_values(&recipe.upstream);
    let mut md = format!("\n## Recipe: {}\n\n{run_md}\n", markdown::text(&recipe.file_name));
    let mut html = format!("<h2>Recipe <small>({})</small></h2>\n<p>{run_html}</p>\n", escape(&recipe.file_name));
    if !values.is_empty() {
        let said = "The values each stage ran with, after `let`s, presets, `--set`s and defaults:";
        let _ = write!(md, "\n### Effective values\n\n{said}\n\n{}\n", markdown::block(&values));
        let _ = write!(
            html,
            "<h3>Effective values</h3>\n<p>{}</p>\n<pre class=\"recipe values\">{}</pre>\n",
            escape(said).replace('`', ""),
            escape(&values)
        );
    }
    let files =
        std::iter::once((&recipe.file_name, &recipe.source)).chain(recipe.used_files.iter().map(|(n, t)| (n, t)));
    for (name, text) in files {
        let _ = write!(md, "\n### Text of {}\n\n{}\n", markdown::code(name), markdown::block(text.trim_end()));
        let _ = write!(
            html,
            "<h3>Text of <code>{}</code></h3>\n<pre class=\"recipe\">{}</pre>\n",
            escape(name),
            escape(text.trim_end())
        );
    }
    (md, html)
}

/// Each stage the pipeline writes as a block of its keys, one a line:
/// `train ddpm {\n    steps = 100\n    …\n}`.
fn effective_values(upstream: &[Upstream]) -> String {
    let mut out = String::new();
    for stage in upstream.iter().filter(|s| !s.hidden) {
        let default_variant = crate::schema::kind(&stage.kind).and_then(|k| k.default_variant);
        let variant = if stage.variant.is_empty() || default_variant == Some(stage.variant.as_str()) {
            String::new()
        } else {
            format!(" = {}", stage.variant)
        };
        let _ = writeln!(out, "{} {}{variant} {{", stage.kind, stage.name);
        for (key, value) in &stage.values {
            let _ = writeln!(out, "    {key} = {value}");
        }
        out.push_str("}\n");
    }
    out.trim_end().to_string()
}

/// One provenance row: a stage, its entry's manifest and headline numbers.
struct Row {
    name: String,
    kind: String,
    manifest: Option<Manifest>,
    numbers: String,
}

/// `## Provenance`: one row per stage the report depends on (`upstream`; else the
/// included stages, `members`): its headline numbers, wall time, the device and CPU
/// threads it ran on, the torch and difflow that computed it, its key and output digests.
/// `requested`: the device the run asked for (`auto`), said where no entry records one.
pub fn provenance(members: &[(&str, &Input)], upstream: &[Upstream], requested: &str) -> (String, String) {
    let row = |name: &str, kind: &str, dir: &std::path::Path, params: &serde_json::Value| {
        let manifest = manifest(dir);
        let numbers = numbers_text(&headline_numbers(kind, dir, params, manifest.as_ref()));
        Row { name: name.to_string(), kind: kind.to_string(), manifest, numbers }
    };
    let rows: Vec<Row> = if upstream.is_empty() {
        members.iter().map(|(name, input)| row(name, &input.kind, &input.dir, &input.params)).collect()
    } else {
        upstream.iter().map(|u| row(&u.name, &u.kind, &u.dir, &u.params)).collect()
    };
    let distinct = |get: &dyn Fn(&Manifest) -> String| {
        let mut all: Vec<String> = rows.iter().filter_map(|r| r.manifest.as_ref()).map(get).collect();
        all.retain(|x| !x.is_empty());
        all.sort_unstable();
        all.dedup();
        all.join(", ")
    };
    let torch = distinct(&|m| m.torch.clone());
    let torch = if torch.is_empty() { "not recorded".to_string() } else { torch };
    let devices = distinct(&|m| m.device.clone());
    let devices = if devices.is_empty() { format!("not recorded (asked for {requested})") } else { devices };
    let version = env!("CARGO_PKG_VERSION");
    let md_versions =
        format!("difflow {version}, torch {}, device {}", markdown::text(&torch), markdown::code(&devices));
    let header =
        ["stage", "kind", "numbers", "wall time", "device", "threads", "torch", "difflow", "key", "outputs (blake3)"];
    let mut md =
        format!("\n## Provenance\n\n{md_versions}\n\n| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    let mut html = format!(
        "<h2>Provenance</h2>\n<p>{}</p>\n<table class=\"provenance\">\n<tr>{}</tr>\n",
        escape(&format!("difflow {version}, torch {torch}, device {devices}")),
        header.iter().map(|h| format!("<th>{h}</th>")).collect::<String>()
    );
    for r in &rows {
        let m = r.manifest.as_ref();
        let text = |f: &dyn Fn(&Manifest) -> String| m.map(f).unwrap_or_default();
        let wall = text(&|m| format!("{:.1} s", m.duration_s));
        let threads = text(&|m| if m.threads == 0 { String::new() } else { m.threads.to_string() });
        let key = m.map_or_else(|| "(no manifest)".to_string(), |m| m.key.clone());
        let outputs: Vec<String> =
            m.map(|m| m.outputs.iter().map(|(file, o)| format!("{file} {}", o.blake3)).collect()).unwrap_or_default();
        let cells = [text(&|m| m.device.clone()), threads, text(&|m| m.torch.clone()), text(&|m| m.difflow.clone())];
        let md_cells: Vec<String> = cells.iter().map(|c| markdown::text(c)).collect();
        let md_outputs: Vec<String> = outputs.iter().map(|o| markdown::text(o)).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {wall} | {} | {} | {} |",
            markdown::cell(&markdown::code(&r.name)),
            markdown::text(&r.kind),
            markdown::text(&r.numbers),
            md_cells.join(" | "),
            markdown::cell(&markdown::code(&key)),
            md_outputs.join("<br>")
        );
        let html_cells: String = cells.iter().map(|c| format!("<td>{}</td>", escape(c))).collect();
        let _ = writeln!(
            html,
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td>{html_cells}<td class=\"name\">{}</td>\
             <td class=\"name digests\">{}</td></tr>",
            escape(&r.name),
            escape(&r.kind),
            escape(&r.numbers),
            escape(&wall),
            abbreviated(&key),
            m.map(|m| m.outputs.iter().map(|(file, o)| format!("{} {}", escape(file), abbreviated(&o.blake3))))
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    html.push_str("</table>\n");
    (md, html)
}

/// A key or digest on the page: its first 12 characters, the whole in a tooltip (and in
/// `report.md`), so that the table fits the page's width.
fn abbreviated(hex: &str) -> String {
    match hex.char_indices().nth(12) {
        Some((at, _)) => format!("<span title=\"{}\">{}…</span>", escape(hex), escape(&hex[..at])),
        None => escape(hex),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cache::store::OutputFile;

    /// A cache entry of `kind` in `dir` computed by torch `torch` on `device`.
    fn entry(dir: &std::path::Path, key: &str, kind: &str, (torch, device): (&str, &str)) -> Input {
        std::fs::create_dir_all(dir).unwrap();
        let manifest = Manifest {
            key: key.into(),
            kind: kind.into(),
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
            device: device.into(),
            threads: if device.is_empty() { 0 } else { 3 },
            difflow: if device.is_empty() { String::new() } else { "0.9.1".into() },
        };
        std::fs::write(dir.join("manifest.toml"), toml::to_string(&manifest).unwrap()).unwrap();
        Input { kind: kind.into(), variant: "default".into(), params: serde_json::json!({}), dir: dir.into() }
    }

    fn upstream(name: &str, kind: &str, input: &Input, values: &[(&str, &str)]) -> Upstream {
        Upstream {
            name: name.into(),
            kind: kind.into(),
            variant: crate::schema::kind(kind).and_then(|k| k.default_variant).unwrap_or("default").into(),
            values: values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            params: serde_json::json!({ "steps": 20 }),
            hidden: false,
            dir: input.dir.clone(),
        }
    }

    #[test]
    fn provenance_names_each_entrys_key_time_digests_device_threads_and_versions() {
        let d = tempfile::tempdir().unwrap();
        let a = entry(&d.path().join("a"), "k1", "sample", ("2.13.0+cpu", "cuda:0"));
        let b = entry(&d.path().join("b"), "k2", "sample", ("", ""));
        let (md, html) = provenance(&[("gen", &a), ("old", &b)], &[], "auto");
        let versions = format!("difflow {}, torch 2.13.0+cpu, device `cuda:0`", env!("CARGO_PKG_VERSION"));
        assert!(md.contains(&versions), "{md}");
        assert!(
            md.contains(
                "| `gen` | sample |  | 12.3 s | cuda:0 | 3 | 2.13.0+cpu | 0.9.1 | `k1` | samples.safetensors ab12 |"
            ),
            "{md}"
        );
        assert!(md.contains("| `old` | sample |  | 12.3 s |  |  |  |  | `k2` | samples.safetensors ab12 |"), "{md}");
        assert_eq!(html.matches("<tr>").count(), 3);
        let (md, _) = provenance(&[("old", &b)], &[], "auto");
        assert!(md.contains("torch not recorded, device `not recorded (asked for auto)`"), "{md}");
    }

    #[test]
    fn every_upstream_stage_is_a_row_with_its_models_numbers() {
        let d = tempfile::tempdir().unwrap();
        let judge = entry(&d.path().join("judge"), "k1", "classifier", ("2.13.0+cpu", "cpu"));
        std::fs::write(judge.dir.join("meta.json"), r#"{"accuracy": 0.75, "classes": 10}"#).unwrap();
        let ddpm = entry(&d.path().join("ddpm"), "k2", "train", ("2.13.0+cpu", "cpu"));
        std::fs::write(ddpm.dir.join("meta.json"), r#"{"steps": 30, "final_loss": 0.125}"#).unwrap();
        let up = [upstream("judge", "classifier", &judge, &[]), upstream("ddpm", "train", &ddpm, &[])];
        let (md, _) = provenance(&[], &up, "auto");
        assert!(
            md.contains("| `judge` | classifier | steps 20, held-out accuracy 0.7500 | 12.3 s | cpu | 3 |"),
            "{md}"
        );
        assert!(md.contains("| `ddpm` | train | steps 30, final loss 0.1250 | 12.3 s | cpu | 3 |"), "{md}");
    }

    #[test]
    fn the_recipe_shows_the_sets_the_values_each_stage_ran_with_and_the_text() {
        let d = tempfile::tempdir().unwrap();
        let ddpm = entry(&d.path().join("ddpm"), "k2", "train", ("", ""));
        let mut stats = upstream("stats(d, inception)", "stats", &ddpm, &[("of", "d")]);
        stats.hidden = true;
        let recipe = Recipe {
            file_name: "p.diff".into(),
            source: "let steps = 600\ntrain ddpm { steps = steps }\n".into(),
            used_files: vec![("lib.diff".into(), "let lr = 1e-3\n".into())],
            sets: vec!["steps=100".into()],
            upstream: vec![upstream("ddpm", "train", &ddpm, &[("lr", "0.001"), ("steps", "100")]), stats],
        };
        let (md, html) = super::recipe(&recipe);
        assert!(md.contains("Run with `--set steps=100`."), "{md}");
        assert!(md.contains("```\ntrain ddpm {\n    lr = 0.001\n    steps = 100\n}\n```"), "{md}");
        assert!(!md.contains("stats(d"), "no values of a stage the pipeline does not write:\n{md}");
        assert!(md.contains("### Text of `p.diff`\n\n```\nlet steps = 600\ntrain ddpm { steps = steps }\n```"), "{md}");
        assert!(md.contains("### Text of `lib.diff`"), "{md}");
        assert!(html.contains("<code>--set steps=100</code>") && html.contains("    steps = 100\n"), "{html}");
        let (md, _) = super::recipe(&Recipe { sets: vec![], ..recipe });
        assert!(md.contains("Run without `--set`."), "{md}");
    }
}
