//! The `report` stage: `report.md` and a self-contained `report.html` (images inlined as
//! base64) from the entries of the included stages: a metrics table per family (one row
//! per instance, its sweep coordinates first; each metric charted against each numeric
//! sweep coordinate, one line per setting of the others; a family with replicates gets
//! one row per setting, mean ± 95 % CI, see `pooled`), and each instance's grid or plot
//! image.
//! Pure Rust, so the orchestrator runs it in-process; the worker may call it as well.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::cache::lockfile::headline_metrics;
use crate::job::{Input, Job};

mod chart;
pub mod compare;
mod figures;
mod markdown;
mod numbers;
mod pooled;
mod provenance;
pub mod replicates;
pub mod stats;
mod ticks;
mod titles;

pub use provenance::{Recipe, Upstream};
pub use titles::{axis_titles, AxisTitles};

const IMAGES: &[&str] = &["grid.png", "plot.png", "plot.gif"];

/// Write `report.md`, `report.html` and `images/` into `job.out_dir`.
pub fn write_report(job: &Job) -> Result<(), String> {
    write_report_with(job, None)
}

/// The included instances of one family, by name.
type Families<'a> = Vec<(String, Vec<(&'a str, &'a Input)>)>;

/// [`write_report`], with the pipeline's source text shown after the results.
pub fn write_report_with(job: &Job, recipe: Option<&Recipe>) -> Result<(), String> {
    write_report_titled(job, recipe, &AxisTitles::new())
}

/// [`write_report_with`], naming sweep axes by `titles` ([`axis_titles`] of the pipeline).
pub fn write_report_titled(job: &Job, recipe: Option<&Recipe>, titles: &AxisTitles) -> Result<(), String> {
    let title = job
        .params
        .get("title")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("Report {}", job.instance));
    let families = families_of(job)?;
    let img_dir = job.out_dir.join("images");
    let mut md = format!("# {}\n", markdown::text(&title));
    let mut html = html_head(
        &title,
        "1360px",
        "figure { margin: 0.5em 0; max-width: 100%; } figcaption { font-size: 0.9em; max-width: 40em; }\n\
         img { max-width: 100%; image-rendering: pixelated; } svg { max-width: 100%; height: auto; }\n\
         .charts { display: flex; flex-wrap: wrap; gap: 0 1.5em; } .charts figure { flex: 1 1 34em; max-width: 52em; }\n\
         .charts svg { width: 100%; }\n\
         .sweep { display: grid; grid-template-columns: repeat(auto-fit, minmax(12em, 1fr)); gap: 0.8em; align-items: start; }\n\
         .sweep figure { margin: 0; } .sweep img { width: 100%; }\n\
         .sweep figcaption { font-size: 0.85em; font-weight: 600; text-align: center; margin-bottom: 0.3em; max-width: none; }\n\
         p.legend { font-size: 0.9em; color: #555; }\n\
         pre.recipe { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.9em; }\n\
         table.provenance td { overflow-wrap: anywhere; } table.provenance { max-width: 100%; }\n\
         table.provenance td:nth-child(n+2):nth-child(-n+8) { overflow-wrap: normal; white-space: nowrap; }\n",
    );
    for (family, members) in &families {
        write_family(&mut md, &mut html, &img_dir, (family, members), titles)?;
    }
    if let Some(recipe) = recipe {
        let (m, h) = provenance::recipe(recipe);
        md.push_str(&m);
        html.push_str(&h);
    }
    let included: Vec<(&str, &Input)> = families.iter().flat_map(|(_, members)| members.iter().copied()).collect();
    let upstream = recipe.map_or(&[][..], |r| &r.upstream[..]);
    let (m, h) = provenance::provenance(&included, upstream, &job.device);
    md.push_str(&m);
    html.push_str(&h);
    html.push_str("</body>\n</html>\n");
    let write = |file: &str, text: &str| {
        std::fs::write(job.out_dir.join(file), text).map_err(|e| format!("cannot write {file}: {e}"))
    };
    write("report.md", &md)?;
    write("report.html", &html)
}

/// The included instances grouped by family (a sweep's instances share one): families in
/// the order of their first member, members in include order.
fn families_of(job: &Job) -> Result<Families<'_>, String> {
    let mut names = Vec::new();
    if let Some(include) = job.params.get("include") {
        collect_stage_names(include, &mut names);
    }
    if names.is_empty() {
        names = job.inputs.keys().cloned().collect();
    }
    let mut families: Families = Vec::new();
    for name in &names {
        let (name, input) = job
            .inputs
            .get_key_value(name)
            .ok_or_else(|| format!("the report includes `{name}`, which is not among its inputs"))?;
        let family = name.split('[').next().unwrap_or(name).to_string();
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, members)) => members.push((name.as_str(), input)),
            None => families.push((family, vec![(name.as_str(), input)])),
        }
    }
    Ok(families)
}

/// One family's section: its metrics table and charts, its images, else its files.
fn write_family(
    md: &mut String,
    html: &mut String,
    img_dir: &Path,
    (family, members): (&str, &[(&str, &Input)]),
    titles: &AxisTitles,
) -> Result<(), String> {
    let kind = &members[0].1.kind;
    let _ = write!(md, "\n## {} ({})\n", markdown::text(family), markdown::text(kind));
    let _ = writeln!(html, "<h2>{} <small>({})</small></h2>", escape(family), escape(kind));
    let metrics: Vec<BTreeMap<String, f64>> = members.iter().map(|(_, input)| section_numbers(input)).collect();
    let replicated = members.iter().any(|(name, _)| replicates::setting_of(name).is_some());
    if metrics.iter().any(|m| !m.is_empty()) {
        if replicated {
            pooled::write_pooled(md, html, img_dir, (family, members), &metrics, titles)?;
        } else {
            write_metrics(md, html, img_dir, (family, members), &metrics, titles)?;
        }
    }
    figures::write_pictures(md, html, img_dir, members, titles)?;
    if metrics.iter().all(BTreeMap::is_empty) && members.iter().all(|(_, i)| !has_image(&i.dir)) {
        for (name, input) in members {
            let files = list(&input.dir);
            let _ = write!(md, "\n- {}: {}\n", markdown::code(name), markdown::text(&files.join(", ")));
            let _ = writeln!(html, "<p><code>{}</code>: {}</p>", escape(name), escape(&files.join(", ")));
        }
    }
    Ok(())
}

/// A family's metrics: a table (one row per member, sweep coordinates first) and, along
/// each numeric sweep axis, a line chart per metric (a line per setting of the others).
fn write_metrics(
    md: &mut String,
    html: &mut String,
    img_dir: &Path,
    (family, members): (&str, &[(&str, &Input)]),
    metrics: &[BTreeMap<String, f64>],
    titles: &AxisTitles,
) -> Result<(), String> {
    let coords: Vec<Vec<(String, String)>> = members.iter().map(|(n, _)| sweep_coordinates(n)).collect();
    let mut coord_names: Vec<String> = Vec::new();
    for c in coords.iter().flatten() {
        if !coord_names.contains(&c.0) {
            coord_names.push(c.0.clone());
        }
    }
    let mut metric_names: Vec<&String> = metrics.iter().flat_map(|m| m.keys()).collect();
    metric_names.sort();
    metric_names.dedup();
    let header: Vec<String> = std::iter::once("instance".to_string())
        .chain(coord_names.iter().cloned())
        .chain(metric_names.iter().map(|s| s.to_string()))
        .collect();
    write_table_header(md, html, &header);
    for (((name, _), m), c) in members.iter().zip(metrics).zip(&coords) {
        let mut row = vec![markdown::cell(&markdown::code(name))];
        let _ = write!(html, "<tr><td class=\"name\">{}</td>", escape(name));
        for cn in &coord_names {
            let v = c.iter().find(|(k, _)| k == cn).map(|(_, v)| v.clone()).unwrap_or_default();
            let _ = write!(html, "<td>{}</td>", escape(&v));
            row.push(markdown::text(&v));
        }
        for mn in &metric_names {
            let v = m.get(*mn).map(|x| metric_text(*x)).unwrap_or_default();
            let _ = write!(html, "<td>{v}</td>");
            row.push(v);
        }
        html.push_str("</tr>\n");
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    html.push_str("</table>\n");
    let metric_names: Vec<&str> = metric_names.iter().map(|m| m.as_str()).collect();
    let charts = Charts { img_dir, family, members, titles, note: "" };
    charts.write(md, html, &coords, &metric_names, |axis, mn| {
        let ys: Vec<f64> = metrics.iter().map(|m| m.get(mn).copied().unwrap_or(f64::NAN)).collect();
        chart::series_of(axis, &ys)
    })
}

/// A report page's start: `title` as its `<title>` and `<h1>`, the body at most `width`
/// wide, the tables' styles and then `css`.
pub(crate) fn html_head(title: &str, width: &str, css: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\n\
         body {{ font-family: system-ui, sans-serif; max-width: {width}; margin: 2em auto; padding: 0 1em; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 1em 0; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}\n\
         th {{ background: #f3f3f3; }} td.name {{ text-align: left; font-family: monospace; }}\n\
         {css}</style>\n</head>\n<body>\n<h1>{t}</h1>\n",
        t = escape(title)
    )
}

/// A table's start with its column names: a Markdown header row, an HTML `<table>` with
/// its `<th>` row.
fn write_table_header<S: AsRef<str>>(md: &mut String, html: &mut String, header: &[S]) {
    let md_header: Vec<String> = header.iter().map(|h| markdown::text(h.as_ref())).collect();
    let _ = write!(md, "\n| {} |\n|{}\n", md_header.join(" | "), "---|".repeat(header.len()));
    html.push_str("<table>\n<tr>");
    for h in header {
        let _ = write!(html, "<th>{}</th>", escape(h.as_ref()));
    }
    html.push_str("</tr>\n");
}

/// A family's charts: where they are written and what names them.
struct Charts<'a> {
    img_dir: &'a Path,
    family: &'a str,
    members: &'a [(&'a str, &'a Input)],
    titles: &'a AxisTitles,
    /// Ends each chart's title (what the error bars show, if any).
    note: &'a str,
}

impl Charts<'_> {
    /// Each measured metric against each numeric sweep axis of `coords` (one entry per
    /// row), `lines_of(axis, metric)` giving a chart's lines: the SVG into `images/`,
    /// referenced from `md` and inlined in `html`.
    fn write(
        &self,
        md: &mut String,
        html: &mut String,
        coords: &[Vec<(String, String)>],
        metric_names: &[&str],
        lines_of: impl Fn(&chart::Axis, &str) -> Vec<chart::Series>,
    ) -> Result<(), String> {
        let axes = chart::numeric_axes(coords);
        if axes.is_empty() {
            return Ok(());
        }
        html.push_str("<div class=\"charts\">\n");
        let family = self.family;
        for axis in &axes {
            // `count` is how many items were measured and `steps` how long a model trained:
            // settings, not measurements.
            for &mn in metric_names.iter().filter(|m| !["count", "steps"].contains(m)) {
                let x_title = titles::axis_title(self.titles, &axis.name);
                let measure = difflow_core::params::measure::reading_of(mn).map_or(mn, |m| m.title);
                let title = format!("{family}: {measure} against {x_title}{}", self.note);
                let y_title = titles::metric_title(mn, self.members);
                let svg = chart::line_chart(&title, x_title, &y_title, &lines_of(axis, mn), &axis.values);
                let img_dir = self.img_dir;
                std::fs::create_dir_all(img_dir).map_err(|e| format!("cannot create {}: {e}", img_dir.display()))?;
                let file = format!("{}_{}_by_{}.svg", file_safe(family), file_safe(mn), file_safe(&axis.name));
                std::fs::write(img_dir.join(&file), &svg).map_err(|e| format!("cannot write a chart: {e}"))?;
                let _ = write!(md, "\n![{}](images/{file})\n", markdown::text(&title));
                let _ = writeln!(html, "<figure>{svg}</figure>");
            }
        }
        html.push_str("</div>\n");
        Ok(())
    }
}

/// The numbers of a family's table: an entry's metrics, and a model's steps, final loss
/// and held-out accuracy.
fn section_numbers(input: &Input) -> BTreeMap<String, f64> {
    if numbers::is_model(&input.kind) {
        let manifest = numbers::manifest(&input.dir);
        numbers::headline_numbers(&input.kind, &input.dir, &input.params, manifest.as_ref())
    } else {
        headline_metrics(&input.dir, &BTreeMap::new())
    }
}

fn collect_stage_names(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(name) = m.get("$stage").and_then(|n| n.as_str()) {
                if !out.iter().any(|x| x == name) {
                    out.push(name.to_string());
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_stage_names(x, out)),
        _ => {}
    }
}

/// `gen[scale=0.5, steps=10]` → [("scale", "0.5"), ("steps", "10")].
fn sweep_coordinates(name: &str) -> Vec<(String, String)> {
    let Some(inner) = name.find('[').and_then(|s| name.strip_suffix(']').map(|n| &n[s + 1..])) else {
        return Vec::new();
    };
    inner
        .split(',')
        .filter_map(|part| part.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

fn has_image(dir: &Path) -> bool {
    IMAGES.iter().any(|i| dir.join(i).is_file()) || list(dir).iter().any(|f| figures::is_picture(f))
}

fn list(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    files.retain(|f| f != crate::cache::store::MANIFEST);
    files.sort();
    files
}

/// A number as people read it in the report, the run summary and `show`: whole numbers
/// bare, two decimals from 100 up (FID 123.45), four below (0.0123), and four significant
/// digits in scientific notation where those would hide it (9.440e-16, 1.235e9). JSON
/// output keeps every digit.
pub fn metric_text(x: f64) -> String {
    let magnitude = x.abs();
    if !x.is_finite() {
        format!("{x}")
    } else if x == x.trunc() && magnitude < 1e9 {
        format!("{x:.0}")
    } else if !(1e-3..1e9).contains(&magnitude) {
        format!("{x:.3e}")
    } else if magnitude >= 100.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSettings;
    use serde_json::json;

    /// A report job over `inputs`, writing into `out_dir`.
    pub(super) fn report_job(out_dir: &Path, params: serde_json::Value, inputs: BTreeMap<String, Input>) -> Job {
        Job {
            instance: "study".into(),
            kind: "report".into(),
            variant: "default".into(),
            params,
            inputs,
            out_dir: out_dir.to_path_buf(),
            device: "cpu".into(),
            settings: JobSettings::default(),
        }
    }

    #[test]
    fn metric_text_rounds_for_people_and_keeps_tiny_and_huge_numbers_visible() {
        let shown: Vec<String> =
            [200.0, 0.705, 2.279, 123.456, 9.44e-16, -3.2e-5, 1.23456e12, 0.0, f64::NAN].map(metric_text).into();
        assert_eq!(shown, ["200", "0.7050", "2.2790", "123.46", "9.440e-16", "-3.200e-5", "1.235e12", "0", "NaN"]);
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn coordinates_from_instance_names() {
        assert_eq!(
            sweep_coordinates("gen[scale=0.5, steps=10]"),
            [("scale".to_string(), "0.5".to_string()), ("steps".to_string(), "10".to_string())]
        );
        assert!(sweep_coordinates("gen").is_empty());
    }

    #[test]
    fn report_tables_a_family_and_inlines_images() {
        let d = tempfile::tempdir().unwrap();
        let mut inputs = BTreeMap::new();
        for (scale, fid) in [("0.5", 31.25), ("2.0", 12.5)] {
            let dir = d.path().join(format!("scores{scale}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("metrics.json"), json!({"fid": fid, "is": 2.0}).to_string()).unwrap();
            inputs.insert(
                format!("scores[scale={scale}]"),
                Input { kind: "metrics".into(), variant: "default".into(), params: json!({}), dir },
            );
        }
        let plot_dir = d.path().join("plot");
        std::fs::create_dir_all(&plot_dir).unwrap();
        std::fs::write(plot_dir.join("plot.png"), b"\x89PNG fake bytes").unwrap();
        inputs.insert(
            "curve".into(),
            Input { kind: "plot".into(), variant: "scatter".into(), params: json!({}), dir: plot_dir },
        );
        let out_dir = d.path().join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let params = json!({
            "title": "CFG <strength>",
            "include": [{"$stage": "scores[scale=0.5]"}, {"$stage": "scores[scale=2.0]"}, {"$stage": "curve"}]
        });
        let job = report_job(&out_dir, params, inputs);
        write_report(&job).unwrap();
        let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
        assert!(md.starts_with("# CFG \\<strength\\>\n"), "{md}");
        assert!(md.contains("| instance | scale | fid | is |"), "{md}");
        assert!(md.contains("| `scores[scale=0.5]` | 0.5 | 31.2500 | 2 |"), "{md}");
        assert!(md.contains("![curve](images/curve_plot.png)"));
        // A family swept over one number gets each metric charted against it.
        assert!(md.contains("![scores: FID against scale](images/scores_fid_by_scale.svg)"), "{md}");
        let chart = std::fs::read_to_string(out_dir.join("images/scores_fid_by_scale.svg")).unwrap();
        assert_eq!(chart.matches("<circle").count(), 2);
        assert!(out_dir.join("images/curve_plot.png").is_file());
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        assert!(html.contains("<title>CFG &lt;strength&gt;</title>"));
        assert!(html.contains(&format!("data:image/png;base64,{}", base64(b"\x89PNG fake bytes"))));
        assert!(html.contains("<td>12.5000</td>"));
        assert_eq!(html.matches("<figure><svg").count(), 2, "fid and is against scale");
    }

    /// What is left of a Markdown line once its code spans are cut out (their text is shown
    /// verbatim, never as HTML).
    fn outside_code_spans(line: &str) -> String {
        let (mut out, mut rest) = (String::new(), line);
        while let Some(start) = rest.find('`') {
            out.push_str(&rest[..start]);
            let run = rest[start..].chars().take_while(|&c| c == '`').count();
            let fence = "`".repeat(run);
            let after = &rest[start + run..];
            match after.find(&fence) {
                Some(end) => rest = &after[end + run..],
                None => return out + &rest[start..],
            }
        }
        out + rest
    }

    #[test]
    fn no_html_from_titles_or_names_reaches_the_report() {
        let d = tempfile::tempdir().unwrap();
        let hostile = "<img src=x onerror=alert(1)>";
        let name = format!("gen[label={hostile}`|]");
        let dir = d.path().join("m");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metrics.json"), json!({"fid": 1.5}).to_string()).unwrap();
        std::fs::write(dir.join("grid.png"), b"\x89PNG").unwrap();
        let input = Input { kind: "metrics".into(), variant: "default".into(), params: json!({}), dir };
        let out_dir = d.path().join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let params = json!({"title": format!("<script>alert(0)</script>\n<div>{hostile}")});
        let job = report_job(&out_dir, params, [(name.clone(), input)].into_iter().collect());
        let recipe =
            Recipe { file_name: "<b>p.diff".into(), source: "```\n<script>x</script>".into(), ..Default::default() };
        write_report_with(&job, Some(&recipe)).unwrap();
        let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
        let recipe_at = md.find("## Recipe").unwrap();
        let fence_end = md[recipe_at..].find("\n````\n\n").expect("the recipe's fence outlasts its backticks");
        let (before, after) = (&md[..recipe_at], &md[recipe_at + fence_end..]);
        for line in before.lines().chain(after.lines()).chain(md[recipe_at..].lines().take(1)) {
            let bare = outside_code_spans(line).replace("<br>", "");
            let raw = bare.char_indices().any(|(i, c)| c == '<' && !bare[..i].ends_with('\\'));
            assert!(!raw, "raw HTML in report.md: {line}\n{md}");
        }
        assert!(md.starts_with("# \\<script\\>alert\\(0\\)\\</script\\> \\<div\\>\\<img"), "{md}");
        assert!(md.contains(&format!("| ``gen[label={hostile}`\\|]`` |")), "the name, verbatim in its cell:\n{md}");
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        assert!(!html.contains("<script") && !html.contains("<img src=x") && !html.contains("<div>"), "{html}");
    }
}
