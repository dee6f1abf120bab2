//! `difflow report A.diff B.diff --out DIR`: the same metrics of several pipelines side by
//! side. One table (a row per pipeline and instance, a column per metric) and one chart per
//! metric: against a numeric sweep coordinate that every row has (a line per pipeline and
//! setting of the others), else against the pipelines (a line per instance). Written as
//! `report.md` (charts in `images/`) and a self-contained `report.html`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::chart::{self, Series};
use super::{escape, file_safe, markdown, metric_text, sweep_coordinates};

/// The headline metrics of one instance of one pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// How the report names the pipeline (its file name).
    pub pipeline: String,
    pub instance: String,
    pub metrics: BTreeMap<String, f64>,
}

/// One chart: its file name under `images/`, its title and its SVG text.
struct Chart {
    file: String,
    title: String,
    svg: String,
}

/// Writes `out/report.md`, `out/report.html` and the charts in `out/images/`; returns the
/// two report files. Files of an earlier report in `out` are replaced, never followed
/// when they are links.
pub fn write_comparison(out: &Path, rows: &[Row]) -> Result<Vec<PathBuf>, String> {
    let pipelines = pipelines_in_order(rows);
    let title = format!("Comparison of {}", pipelines.join(", "));
    let mut metric_names: Vec<&String> = rows.iter().flat_map(|r| r.metrics.keys()).collect();
    metric_names.sort();
    metric_names.dedup();
    let charts: Vec<Chart> = metric_names
        .iter()
        // `count` is how many items were measured, not a measurement.
        .filter(|m| m.as_str() != "count")
        .filter_map(|m| chart_of(rows, &pipelines, m))
        .collect();
    let (table_md, table_html) = table(rows, &metric_names);
    let mut md = format!("# {}\n\n{table_md}", markdown::text(&title));
    let css = "figure { display: inline-block; margin: 0.5em; vertical-align: top; }\n";
    let mut html = super::html_head(&title, "75em", css) + &table_html;
    let images = out.join("images");
    if !charts.is_empty() {
        create_dir(&images)?;
    }
    for c in &charts {
        write_fresh(&images.join(&c.file), &c.svg)?;
        let _ = write!(md, "\n![{}](images/{})\n", markdown::text(&c.title), c.file);
        let _ = writeln!(html, "<figure>{}</figure>", c.svg);
    }
    html.push_str("</body>\n</html>\n");
    let (md_path, html_path) = (out.join("report.md"), out.join("report.html"));
    write_fresh(&md_path, &md)?;
    write_fresh(&html_path, &html)?;
    Ok(vec![md_path, html_path])
}

/// The pipelines' names in the order of their first row.
fn pipelines_in_order(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.pipeline) {
            out.push(r.pipeline.clone());
        }
    }
    out
}

/// The table as Markdown and HTML: `pipeline | instance | metric…`.
fn table(rows: &[Row], metric_names: &[&String]) -> (String, String) {
    let header: Vec<&str> =
        ["pipeline", "instance"].into_iter().chain(metric_names.iter().map(|m| m.as_str())).collect();
    let md_header: Vec<String> = header.iter().map(|h| markdown::text(h)).collect();
    let mut md = format!("| {} |\n|{}\n", md_header.join(" | "), "---|".repeat(header.len()));
    let mut html = String::from("<table>\n<tr>");
    for h in &header {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr>\n");
    for r in rows {
        let mut cells = vec![markdown::text(&r.pipeline), markdown::cell(&markdown::code(&r.instance))];
        let _ = write!(
            html,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td>",
            escape(&r.pipeline),
            escape(&r.instance)
        );
        for m in metric_names {
            let v = r.metrics.get(*m).map(|x| metric_text(*x)).unwrap_or_default();
            let _ = write!(html, "<td>{v}</td>");
            cells.push(v);
        }
        html.push_str("</tr>\n");
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    html.push_str("</table>\n");
    (md, html)
}

/// The chart of `metric`, or none when no row has a finite value of it.
fn chart_of(rows: &[Row], pipelines: &[String], metric: &str) -> Option<Chart> {
    let ys: Vec<f64> = rows.iter().map(|r| r.metrics.get(metric).copied().unwrap_or(f64::NAN)).collect();
    if !ys.iter().any(|y| y.is_finite()) {
        return None;
    }
    let coords: Vec<Vec<(String, String)>> = rows.iter().map(|r| sweep_coordinates(&r.instance)).collect();
    let (lines, x_name, ticks) = match chart::numeric_axes(&coords).into_iter().next() {
        Some(mut axis) => {
            // A line per pipeline, family and setting of the other coordinates.
            for (label, r) in axis.series.iter_mut().zip(rows) {
                let family = r.instance.split('[').next().unwrap_or(&r.instance);
                *label = if label.is_empty() {
                    format!("{} {family}", r.pipeline)
                } else {
                    format!("{} {family} {label}", r.pipeline)
                };
            }
            (chart::series_of(&axis, &ys), axis.name.clone(), axis.values)
        }
        None => by_pipeline(rows, pipelines, &ys),
    };
    let lines: Vec<Series> = lines.into_iter().filter(|s| s.points.iter().any(|p| p.1.is_finite())).collect();
    let title =
        if x_name == "pipeline" { format!("{metric} by pipeline") } else { format!("{metric} against {x_name}") };
    let svg = chart::line_chart(&title, &x_name, metric, &lines, &ticks);
    let file = if x_name == "pipeline" {
        format!("{}.svg", file_safe(metric))
    } else {
        format!("{}_by_{}.svg", file_safe(metric), file_safe(&x_name))
    };
    Some(Chart { file, title, svg })
}

/// The pipelines as x positions 1, 2, … (ticked with their names), a line per instance name.
fn by_pipeline(rows: &[Row], pipelines: &[String], ys: &[f64]) -> (Vec<Series>, String, Vec<(f64, String)>) {
    let x_of = |p: &str| pipelines.iter().position(|q| q == p).map_or(f64::NAN, |i| (i + 1) as f64);
    let mut lines: Vec<Series> = Vec::new();
    for (r, &y) in rows.iter().zip(ys) {
        let point = (x_of(&r.pipeline), y);
        match lines.iter_mut().find(|s| s.label == r.instance) {
            Some(line) => line.points.push(point),
            None => lines.push(Series { label: r.instance.clone(), points: vec![point], errors: Vec::new() }),
        }
    }
    let ticks = pipelines.iter().enumerate().map(|(i, p)| ((i + 1) as f64, p.clone())).collect();
    (lines, "pipeline".to_string(), ticks)
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Writes `text` to a new file at `path`; whatever was there (a file of an earlier report,
/// or a link) is removed first, so a link is never followed.
pub(crate) fn write_fresh(path: &Path, text: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => return Err(format!("cannot write {}: a folder is in the way", path.display())),
        Ok(_) => std::fs::remove_file(path).map_err(fail)?,
        Err(_) => {}
    }
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pipeline: &str, instance: &str, metrics: &[(&str, f64)]) -> Row {
        Row {
            pipeline: pipeline.into(),
            instance: instance.into(),
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn one_table_holds_every_pipeline_and_a_chart_per_metric() {
        let d = tempfile::tempdir().unwrap();
        let rows = [
            row("a.diff", "scores", &[("fid", 31.25), ("count", 64.0)]),
            row("b.diff", "scores", &[("fid", 12.5), ("is", 2.0), ("count", 64.0)]),
        ];
        write_comparison(d.path(), &rows).unwrap();
        let md = std::fs::read_to_string(d.path().join("report.md")).unwrap();
        assert!(md.contains("| pipeline | instance | count | fid | is |"), "{md}");
        assert!(md.contains("| a.diff | `scores` | 64 | 31.2500 |  |"), "{md}");
        assert!(md.contains("| b.diff | `scores` | 64 | 12.5000 | 2 |"), "{md}");
        assert!(md.contains("![fid by pipeline](images/fid.svg)"), "{md}");
        assert!(!d.path().join("images/count.svg").exists());
        let fid = std::fs::read_to_string(d.path().join("images/fid.svg")).unwrap();
        assert_eq!(fid.matches("<circle").count(), 2);
        assert!(fid.contains(">a.diff</text>") && fid.contains(">b.diff</text>"), "{fid}");
        let html = std::fs::read_to_string(d.path().join("report.html")).unwrap();
        assert_eq!(html.matches("<table>").count(), 1);
        assert_eq!(html.matches("<figure><svg").count(), 2, "fid and is");
    }

    #[test]
    fn a_shared_sweep_is_the_x_axis_with_a_line_per_pipeline() {
        let d = tempfile::tempdir().unwrap();
        let rows = [
            row("a.diff", "scores[steps=10]", &[("fid", 30.0)]),
            row("a.diff", "scores[steps=20]", &[("fid", 20.0)]),
            row("b.diff", "scores[steps=10]", &[("fid", 25.0)]),
            row("b.diff", "scores[steps=20]", &[("fid", 15.0)]),
        ];
        write_comparison(d.path(), &rows).unwrap();
        let svg = std::fs::read_to_string(d.path().join("images/fid_by_steps.svg")).unwrap();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains(">a.diff scores</text>") && svg.contains(">b.diff scores</text>"), "{svg}");
    }

    #[test]
    fn a_link_in_the_folder_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside.txt");
        std::fs::write(&outside, "keep").unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("report.md")).unwrap();
        write_comparison(&out, &[row("a.diff", "scores", &[("fid", 1.0)])]).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("a.diff"));
    }
}
