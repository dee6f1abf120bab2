//! A family with replicates in the report: one row per setting (its replicates pooled),
//! each metric as mean ± 95 % confidence interval with the number of replicates, a note
//! where two settings' intervals overlap, and charts of the means with error bars against
//! the swept coordinates (never against the replicate).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::replicates::{coordinates, pool, summaries, summary_text};
use super::stats::Summary;
use super::titles::AxisTitles;
use super::{chart, escape, markdown, write_table_header, Charts};
use crate::job::Input;

/// At most this many overlapping pairs are named per metric (the rest are counted).
const MAX_PAIRS: usize = 12;

/// One pooled setting: its name, its coordinates, how many replicates, each metric's summary.
struct Setting {
    name: String,
    coords: Vec<(String, String)>,
    n: usize,
    summaries: BTreeMap<String, Summary>,
}

pub(super) fn write_pooled(
    md: &mut String,
    html: &mut String,
    img_dir: &Path,
    (family, members): (&str, &[(&str, &Input)]),
    metrics: &[BTreeMap<String, f64>],
    axis_titles: &AxisTitles,
) -> Result<(), String> {
    let names: Vec<&str> = members.iter().map(|(n, _)| *n).collect();
    let settings: Vec<Setting> = pool(&names)
        .into_iter()
        .map(|(name, at)| Setting {
            coords: coordinates(&name),
            n: at.len(),
            summaries: summaries(at.iter().map(|&i| &metrics[i])),
            name,
        })
        .collect();
    let mut coord_names: Vec<&str> = Vec::new();
    for (k, _) in settings.iter().flat_map(|s| &s.coords) {
        if !coord_names.contains(&k.as_str()) {
            coord_names.push(k);
        }
    }
    let mut metric_names: Vec<&str> = settings.iter().flat_map(|s| s.summaries.keys().map(String::as_str)).collect();
    metric_names.sort();
    metric_names.dedup();
    write_table(md, html, &settings, &coord_names, &metric_names);
    write_overlaps(md, html, &settings, &metric_names);
    let coords: Vec<Vec<(String, String)>> = settings.iter().map(|s| s.coords.clone()).collect();
    let charts = Charts { img_dir, family, members, titles: axis_titles, note: " (mean ± 95 % CI)" };
    charts.write(md, html, &coords, &metric_names, |axis, mn| {
        let of = |f: fn(&Summary) -> f64| -> Vec<f64> {
            settings.iter().map(|s| s.summaries.get(mn).map_or(f64::NAN, f)).collect()
        };
        let means = chart::series_of(axis, &of(|s| s.mean));
        let errors = chart::series_of(axis, &of(|s| s.ci95.unwrap_or(0.0)));
        means
            .into_iter()
            .zip(errors)
            .map(|(m, e)| chart::Series { errors: e.points.iter().map(|p| p.1).collect(), ..m })
            .collect()
    })
}

fn write_table(md: &mut String, html: &mut String, settings: &[Setting], coord_names: &[&str], metric_names: &[&str]) {
    let header: Vec<&str> = std::iter::once("setting")
        .chain(coord_names.iter().copied())
        .chain(["n"])
        .chain(metric_names.iter().copied())
        .collect();
    write_table_header(md, html, &header);
    for s in settings {
        let mut row = vec![markdown::cell(&markdown::code(&s.name))];
        let _ = write!(html, "<tr><td class=\"name\">{}</td>", escape(&s.name));
        for cn in coord_names {
            let v = s.coords.iter().find(|(k, _)| k == cn).map(|(_, v)| v.as_str()).unwrap_or_default();
            let _ = write!(html, "<td>{}</td>", escape(v));
            row.push(markdown::text(v));
        }
        let _ = write!(html, "<td>{}</td>", s.n);
        row.push(s.n.to_string());
        for mn in metric_names {
            // `count` is how many items were measured, not a measurement.
            let shown = |x: &Summary| if *mn == "count" { super::metric_text(x.mean) } else { summary_text(x) };
            let v = s.summaries.get(*mn).map(shown).unwrap_or_default();
            let _ = write!(html, "<td>{}</td>", escape(&v));
            row.push(markdown::text(&v));
        }
        html.push_str("</tr>\n");
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    html.push_str("</table>\n");
    let caption = "Each metric: mean ± half-width of its 95 % confidence interval over the n replicates \
                   (Student's t, n − 1 degrees of freedom).";
    let _ = write!(md, "\n{}\n", markdown::text(caption));
    let _ = writeln!(html, "<p class=\"caption\">{}</p>", escape(caption));
}

/// The pairs of settings whose intervals of a metric overlap: a difference these
/// replicates do not resolve.
fn write_overlaps(md: &mut String, html: &mut String, settings: &[Setting], metric_names: &[&str]) {
    let mut lines = Vec::new();
    for mn in metric_names.iter().filter(|m| **m != "count") {
        let mut pairs = Vec::new();
        for (i, a) in settings.iter().enumerate() {
            for b in &settings[i + 1..] {
                let (Some(sa), Some(sb)) = (a.summaries.get(*mn), b.summaries.get(*mn)) else { continue };
                if sa.ci95.is_some() && sb.ci95.is_some() && sa.overlaps(sb) {
                    pairs.push(format!("{} and {}", a.name, b.name));
                }
            }
        }
        if pairs.is_empty() {
            continue;
        }
        let more = pairs.len().saturating_sub(MAX_PAIRS);
        pairs.truncate(MAX_PAIRS);
        let more = if more > 0 { format!(" and {more} more pairs") } else { String::new() };
        lines.push(format!("{mn}: {}{more}", pairs.join("; ")));
    }
    if lines.is_empty() {
        return;
    }
    let intro = "Overlapping intervals (a difference smaller than the intervals, not resolved by these replicates):";
    let _ = write!(md, "\n{}\n\n", markdown::text(intro));
    let _ = writeln!(html, "<p class=\"overlap\">{}</p>\n<ul>", escape(intro));
    for line in &lines {
        let _ = writeln!(md, "- {}", markdown::text(line));
        let _ = writeln!(html, "<li>{}</li>", escape(line));
    }
    html.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    use super::super::tests::report_job;
    use super::super::write_report;
    use crate::job::Input;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn replicates_become_one_row_per_setting_with_intervals_and_error_bars() {
        let d = tempfile::tempdir().unwrap();
        let mut inputs = BTreeMap::new();
        // w = 1 and w = 2 overlap in fid; w = 3 is far from both.
        let fids = [("1", [10.0, 11.0, 12.0]), ("2", [11.5, 12.0, 12.5]), ("3", [30.0, 31.0, 32.0])];
        for (w, values) in fids {
            for (r, fid) in values.into_iter().enumerate() {
                let dir = d.path().join(format!("m{w}{r}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("metrics.json"), json!({ "fid": fid, "count": 64 }).to_string()).unwrap();
                let input = Input { kind: "metrics".into(), variant: "default".into(), params: json!({}), dir };
                inputs.insert(format!("scores[w={w},replicate={}]", r + 1), input);
            }
        }
        let out_dir = d.path().join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let job = report_job(&out_dir, json!({}), inputs);
        write_report(&job).unwrap();
        let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
        assert!(md.contains("| setting | w | n | count | fid |"), "{md}");
        // 11 ± t₀.₉₇₅(2) · 1 / √3 = 11 ± 2.4841.
        assert!(md.contains("| `scores[w=1]` | 1 | 3 | 64 | 11 ± 2.4841 |"), "{md}");
        assert!(md.contains("- fid: scores\\[w=1\\] and scores\\[w=2\\]\n"), "only w = 1 and 2 overlap: {md}");
        assert!(!md.contains("by_replicate") && md.contains("scores_fid_by_w.svg"), "{md}");
        let chart = std::fs::read_to_string(out_dir.join("images/scores_fid_by_w.svg")).unwrap();
        assert_eq!(chart.matches("class=\"error-bar\"").count(), 3, "{chart}");
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        assert!(html.contains("<td>11 ± 2.4841</td>") && html.contains("<li>fid: scores[w=1] and scores[w=2]</li>"));
    }
}
