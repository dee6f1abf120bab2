//! Line charts for the report, as self-contained SVG. A family swept over numeric
//! coordinates (`scores[step=1000]`, `gen[eta=0.0, steps=10]`, …) gets each metric drawn
//! against each swept coordinate, one line per setting of the other coordinates (DDIM:
//! FID against steps, one line per η), such as classifier accuracy against training step.

use super::{escape, ticks};
use std::fmt::Write as _;

const WIDTH: f64 = 660.0;
const HEIGHT: f64 = 360.0;
/// Left, right, top and bottom margins (room for tick labels and axis titles; the y axis's
/// title is written across the top, where a long one has room).
const MARGIN: (f64, f64, f64, f64) = (100.0, 24.0, 58.0, 56.0);
/// The font size of labels, ticks and the legend.
const FONT_SIZE: f64 = 14.0;
const TITLE_FONT_SIZE: f64 = 16.0;
/// A legend entry: the colour swatch, the gap before its label, and the room after it.
const LEGEND_SWATCH: f64 = 26.0;
const LEGEND_PAD: f64 = 12.0;
const TICKS: usize = 5;
/// More distinct swept values than this get evenly spaced ticks instead of one per value.
const MAX_VALUE_TICKS: usize = 8;
/// matplotlib's tab10, first six, as the PNG plots use.
const COLOURS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/// One line: its legend label (empty when it is the only one), its points and, for means
/// over replicates, each point's error (the half-width of its interval; empty for none).
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub errors: Vec<f64>,
}

/// What to chart against: a swept coordinate, each member's value of it (as a number and
/// as written), and each member's label from the other coordinates.
#[derive(Debug, PartialEq)]
pub struct Axis {
    pub name: String,
    pub values: Vec<(f64, String)>,
    pub series: Vec<String>,
}

/// Every coordinate that can be an x axis: present in every member with a numeric value,
/// taking at least two distinct values, and not a seed or a replicate. Members with the same other coordinates form a
/// line, labelled `eta=0.0`.
pub fn numeric_axes(coords: &[Vec<(String, String)>]) -> Vec<Axis> {
    let Some(first) = coords.first() else { return Vec::new() };
    let names: Vec<&String> = first.iter().map(|(k, _)| k).collect();
    let same_names = coords.iter().all(|c| c.len() == names.len() && c.iter().zip(&names).all(|((k, _), n)| k == *n));
    if !same_names {
        return Vec::new();
    }
    let mut axes = Vec::new();
    for (at, name) in names.iter().enumerate() {
        // A seed labels a draw; drawing the metric against it would suggest a trend.
        if name.as_str() == "seed" || name.ends_with(".seed") || super::replicates::is_replicate(name) {
            continue;
        }
        let values: Option<Vec<(f64, String)>> = coords
            .iter()
            .map(|c| {
                let text = &c[at].1;
                text.replace('_', "").parse::<f64>().ok().filter(|x| x.is_finite()).map(|x| (x, text.clone()))
            })
            .collect();
        let Some(values) = values else { continue };
        let mut distinct: Vec<f64> = values.iter().map(|v| v.0).collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        if distinct.len() < 2 {
            continue;
        }
        let series = coords
            .iter()
            .map(|c| {
                let others: Vec<String> =
                    c.iter().enumerate().filter(|(j, _)| *j != at).map(|(_, (k, v))| format!("{k}={v}")).collect();
                others.join(", ")
            })
            .collect();
        axes.push(Axis { name: (*name).clone(), values, series });
    }
    axes
}

/// The lines of one metric against `axis`, in order of first appearance.
pub fn series_of(axis: &Axis, ys: &[f64]) -> Vec<Series> {
    let mut lines: Vec<Series> = Vec::new();
    for ((x, _), (label, &y)) in axis.values.iter().zip(axis.series.iter().zip(ys)) {
        match lines.iter_mut().find(|s| s.label == *label) {
            Some(line) => line.points.push((*x, y)),
            None => lines.push(Series { label: label.clone(), points: vec![(*x, y)], errors: Vec::new() }),
        }
    }
    lines
}

/// An SVG line chart of `lines` against x, error bars where a series has them; ticks on
/// x at the swept values (`ticks`: value and text) when there are few, else at round
/// numbers, a log x axis when they span 20× or more; y ticks at round numbers from a
/// sensible origin ([`ticks::y_range`]).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, lines: &[Series], ticks: &[(f64, String)]) -> String {
    let lines: Vec<Drawn> = lines.iter().map(Drawn::of).collect();
    let (frame, not_from_zero) = Frame::fit(&lines);
    let y_title = if not_from_zero { format!("{y_label} (axis not from 0)") } else { y_label.to_string() };
    let x_title = if frame.log_x { format!("{x_label} (log scale)") } else { x_label.to_string() };
    let legend = lines.len() > 1 || lines.iter().any(|s| !s.label.is_empty());
    let width = chart_width(title, &y_title, &lines, legend);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{HEIGHT}\" viewBox=\"0 0 {width} {HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"{FONT_SIZE}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{:.1}\" y=\"22\" text-anchor=\"middle\" font-size=\"{TITLE_FONT_SIZE}\">{}</text>\n",
        width / 2.0,
        escape(title)
    );
    frame.write_axes(&mut svg, ticks, &x_title, &y_title);
    for (i, line) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        frame.write_line(&mut svg, line, colour);
        if legend {
            write_legend_entry(&mut svg, i, colour, &line.label);
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Wide enough for the plot with its legend (the longest label), the title and the y
/// axis's title.
fn chart_width(title: &str, y_title: &str, lines: &[Drawn], legend: bool) -> f64 {
    let legend_width = lines.iter().map(|s| text_width(&s.label, FONT_SIZE)).fold(0.0, f64::max);
    [
        WIDTH + if legend { LEGEND_PAD + LEGEND_SWATCH + legend_width + LEGEND_PAD } else { 0.0 },
        text_width(title, TITLE_FONT_SIZE) + 2.0 * LEGEND_PAD,
        text_width(y_title, FONT_SIZE) + 2.0 * LEGEND_PAD,
    ]
    .into_iter()
    .fold(0.0, f64::max)
    .ceil()
}

/// Entry `i` of the legend, right of the plot: a swatch of the line's colour and its label.
fn write_legend_entry(svg: &mut String, i: usize, colour: &str, label: &str) {
    let (_, right, top, _) = MARGIN;
    let y = top + 12.0 + i as f64 * 22.0;
    let x = WIDTH - right + LEGEND_PAD;
    let _ = writeln!(
        svg,
        "<line x1=\"{x}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        x + 20.0,
        x + LEGEND_SWATCH,
        y + 5.0,
        escape(label)
    );
}

/// The plot's coordinates: x (log10 on a log axis) from `x_lo` to `x_hi`, y over the
/// round scale, mapped onto the plot area inside `MARGIN`.
struct Frame {
    log_x: bool,
    x_lo: f64,
    x_hi: f64,
    y_scale: ticks::Scale,
}

impl Frame {
    /// The frame that holds every point with its error bar; whether y does not start at 0.
    fn fit(lines: &[Drawn]) -> (Frame, bool) {
        let all = || lines.iter().flat_map(|s| s.points.iter().copied());
        let log_x = {
            let (lo, hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
            lo > 0.0 && hi / lo >= 20.0
        };
        let fx = |x: f64| if log_x { x.log10() } else { x };
        let (x_lo, x_hi) = padded(all().map(|p| fx(p.0)));
        let (y_min, y_max) =
            all().flat_map(|(_, y, e)| [y - e, y + e]).fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (y_min, y_max, not_from_zero) =
            if y_min <= y_max { ticks::y_range(y_min, y_max) } else { (0.0, 1.0, false) };
        let y_scale = ticks::nice_scale(y_min, y_max, TICKS - 1);
        (Frame { log_x, x_lo, x_hi, y_scale }, not_from_zero)
    }

    fn plot_size() -> (f64, f64) {
        let (left, right, top, bottom) = MARGIN;
        (WIDTH - left - right, HEIGHT - top - bottom)
    }

    fn sx(&self, x: f64) -> f64 {
        let fx = if self.log_x { x.log10() } else { x };
        MARGIN.0 + (fx - self.x_lo) / (self.x_hi - self.x_lo) * Self::plot_size().0
    }

    fn sy(&self, y: f64) -> f64 {
        let (lo, hi) = (self.y_scale.lo, self.y_scale.hi);
        MARGIN.2 + (1.0 - (y - lo) / (hi - lo)) * Self::plot_size().1
    }

    /// The plot's border, the ticks with their labels and grid lines, and both axes' titles.
    fn write_axes(&self, svg: &mut String, ticks: &[(f64, String)], x_title: &str, y_title: &str) {
        let (left, _, top, _) = MARGIN;
        let (plot_w, plot_h) = Self::plot_size();
        let _ = writeln!(
            svg,
            "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#888\"/>"
        );
        for (x, text) in &x_ticks(ticks, (self.x_lo, self.x_hi), self.log_x) {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                self.sx(*x),
                top + plot_h + 18.0,
                escape(text)
            );
        }
        for y in self.y_scale.ticks() {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
                 <line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
                left - 6.0,
                self.sy(y) + 5.0,
                ticks::label(y, self.y_scale.step),
                left + plot_w,
                self.sy(y),
                self.sy(y)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text x=\"{LEGEND_PAD}\" y=\"{:.1}\">{}</text>",
            left + plot_w / 2.0,
            HEIGHT - 12.0,
            escape(x_title),
            top - 12.0,
            escape(y_title)
        );
    }

    /// One series: its polyline, an error bar at each point that has one, and its points.
    fn write_line(&self, svg: &mut String, line: &Drawn, colour: &str) {
        let path: Vec<String> =
            line.points.iter().map(|&(x, y, _)| format!("{:.1},{:.1}", self.sx(x), self.sy(y))).collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y, e) in &line.points {
            if e > 0.0 {
                let (cx, lo, hi) = (self.sx(x), self.sy(y - e), self.sy(y + e));
                let _ = writeln!(
                    svg,
                    "<path class=\"error-bar\" stroke=\"{colour}\" stroke-width=\"1.5\" fill=\"none\" \
                     d=\"M{cx:.1},{lo:.1}V{hi:.1}M{:.1},{lo:.1}H{:.1}M{:.1},{hi:.1}H{:.1}\"/>",
                    cx - 5.0,
                    cx + 5.0,
                    cx - 5.0,
                    cx + 5.0
                );
            }
            let _ =
                writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/>", self.sx(x), self.sy(y));
        }
    }
}

/// An upper bound on the width of `text` in a sans-serif font of `size` px: per character
/// the advance of the widest glyphs of its class in DejaVu Sans and Arial, so that a label
/// laid out by it is never cut off by the edge of the chart.
fn text_width(text: &str, size: f64) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 0.32,
            ' ' | 'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '-' => 0.42,
            'm' | 'w' | 'M' | 'W' | '=' | '+' | '<' | '>' | '~' | '%' | '@' => 1.0,
            'A'..='Z' => 0.8,
            c if c.is_ascii() => 0.66,
            _ => 1.0,
        })
        .sum();
    em * size
}

/// A series as drawn: finite points in x order, each with its error (half-width, 0 for none).
struct Drawn {
    label: String,
    points: Vec<(f64, f64, f64)>,
}

impl Drawn {
    fn of(s: &Series) -> Drawn {
        let error = |i: usize| s.errors.get(i).copied().filter(|e| e.is_finite() && *e > 0.0).unwrap_or(0.0);
        let mut points: Vec<(f64, f64, f64)> = s
            .points
            .iter()
            .enumerate()
            .filter(|(_, (x, y))| x.is_finite() && y.is_finite())
            .map(|(i, &(x, y))| (x, y, error(i)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        Drawn { label: s.label.clone(), points }
    }
}

/// The x ticks: the swept values as written when there are few, else round numbers over
/// the axis (`x_lo`, `x_hi` are log10 values on a log axis).
fn x_ticks(values: &[(f64, String)], (x_lo, x_hi): (f64, f64), log_x: bool) -> Vec<(f64, String)> {
    let mut distinct: Vec<&(f64, String)> = values.iter().filter(|(x, _)| x.is_finite()).collect();
    distinct.sort_by(|a, b| a.0.total_cmp(&b.0));
    distinct.dedup_by(|a, b| a.0 == b.0);
    if !distinct.is_empty() && distinct.len() <= MAX_VALUE_TICKS {
        return distinct.into_iter().cloned().collect();
    }
    if log_x {
        let (lo, hi) = (10f64.powf(x_lo), 10f64.powf(x_hi));
        return ticks::log_ticks(lo, hi).into_iter().map(|v| (v, ticks::label(v, v))).collect();
    }
    let scale = ticks::nice_scale(x_lo, x_hi, TICKS - 1);
    scale.ticks().into_iter().filter(|v| (x_lo..=x_hi).contains(v)).map(|v| (v, ticks::label(v, scale.step))).collect()
}

/// The range of the values with 5 % padding (a unit range around a single value).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { (lo.abs() * 0.1).max(1e-3) };
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(items: &[&[(&str, &str)]]) -> Vec<Vec<(String, String)>> {
        items.iter().map(|c| c.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect()
    }

    fn xy(svg: &str, line: usize) -> Vec<(f64, f64)> {
        let points = svg.split("points=\"").nth(line + 1).unwrap().split('"').next().unwrap();
        points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn each_numeric_coordinate_with_two_values_is_an_axis() {
        let axes = numeric_axes(&coords(&[&[("step", "2_000")], &[("step", "500")]]));
        assert_eq!(axes.len(), 1);
        assert_eq!(axes[0].name, "step");
        assert_eq!(axes[0].values, [(2000.0, "2_000".to_string()), (500.0, "500".to_string())]);
        assert_eq!(axes[0].series, ["", ""]);
        assert!(numeric_axes(&coords(&[&[("step", "500")]])).is_empty(), "one point is no curve");
        assert!(numeric_axes(&coords(&[&[("sampler", "ddim")], &[("sampler", "ddpm")]])).is_empty());
        assert!(numeric_axes(&coords(&[&[("a", "1")], &[("b", "2")]])).is_empty());
        // Two coordinates: one axis each, the other one naming the lines; a constant is no axis.
        let grid = coords(&[
            &[("eta", "0.0"), ("steps", "10"), ("k", "1")],
            &[("eta", "0.0"), ("steps", "50"), ("k", "1")],
            &[("eta", "1.0"), ("steps", "10"), ("k", "1")],
            &[("eta", "1.0"), ("steps", "50"), ("k", "1")],
        ]);
        let axes = numeric_axes(&grid);
        assert_eq!(axes.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["eta", "steps"]);
        assert_eq!(axes[1].series[2], "eta=1.0, k=1");
        let lines = series_of(&axes[1], &[4.0, 3.0, 2.0, 1.0]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].label, "eta=1.0, k=1");
        assert_eq!(lines[1].points, [(10.0, 2.0), (50.0, 1.0)]);
    }

    #[test]
    fn draws_every_point_in_x_order_inside_the_frame() {
        let line = Series {
            label: String::new(),
            points: vec![(2000.0, 0.9), (500.0, 0.2), (1000.0, f64::NAN)],
            errors: Vec::new(),
        };
        let ticks = [(2000.0, "2000".to_string()), (500.0, "500".to_string())];
        let svg = line_chart("acc <by> step", "step", "accuracy", &[line], &ticks);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("acc &lt;by&gt; step"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("log scale") && !svg.contains("stroke-width=\"3\""), "one line, no legend");
        let xy = xy(&svg, 0);
        assert_eq!(xy.len(), 2);
        assert!(xy[0].0 < xy[1].0, "sorted by step");
        assert!(xy[0].1 > xy[1].1, "higher accuracy is drawn higher up");
        for (x, y) in xy {
            assert!((MARGIN.0..=WIDTH - MARGIN.1).contains(&x) && (MARGIN.2..=HEIGHT - MARGIN.3).contains(&y));
        }
    }

    #[test]
    fn means_get_error_bars_and_round_ticks_from_zero() {
        let line = Series { label: String::new(), points: vec![(1.0, 0.62), (2.0, 0.81)], errors: vec![0.05, 0.0] };
        let ticks = [(1.0, "1".to_string()), (2.0, "2".to_string())];
        let svg = line_chart("accuracy", "scale", "accuracy", &[line], &ticks);
        assert_eq!(svg.matches("class=\"error-bar\"").count(), 1, "a zero-width interval draws no bar: {svg}");
        for label in ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"] {
            assert!(svg.contains(&format!(">{label}</text>")), "tick {label}: {svg}");
        }
        assert!(!svg.contains("not from 0"));
        // The bar spans mean ± error on the axis: 0.57 to 0.67 of a 0–1 axis.
        let bar = svg.split("class=\"error-bar\"").nth(1).unwrap();
        let d = bar.split("d=\"M").nth(1).unwrap();
        let (_, ys) = d.split_once(',').unwrap();
        let lo: f64 = ys.split('V').next().unwrap().parse().unwrap();
        let hi: f64 = ys.split('V').nth(1).unwrap().split('M').next().unwrap().parse().unwrap();
        let plot_h = HEIGHT - MARGIN.2 - MARGIN.3;
        assert!((lo - (MARGIN.2 + (1.0 - 0.57) * plot_h)).abs() < 0.1, "{d}");
        assert!((hi - (MARGIN.2 + (1.0 - 0.67) * plot_h)).abs() < 0.1, "{d}");
        let far = Series { label: String::new(), points: vec![(1.0, 121.0), (2.0, 128.0)], errors: vec![] };
        let svg = line_chart("fid", "scale", "fid", &[far], &ticks);
        assert!(svg.contains("fid (axis not from 0)"), "{svg}");
        assert!(svg.contains(">120</text>") && svg.contains(">128</text>"), "{svg}");
    }

    #[test]
    fn a_seed_is_never_an_axis() {
        assert!(numeric_axes(&coords(&[&[("seed", "1")], &[("seed", "2")], &[("seed", "3")]])).is_empty());
        let replicates = coords(&[&[("replicate", "1")], &[("replicate", "2")], &[("fit.replicate", "3")]]);
        assert!(numeric_axes(&replicates[..2]).is_empty() && numeric_axes(&replicates[2..]).is_empty());
    }

    #[test]
    fn several_lines_get_a_legend_and_a_wide_range_a_log_axis() {
        let lines = [
            Series {
                label: "eta=0.0".into(),
                points: vec![(10.0, 30.0), (100.0, 20.0), (1000.0, 10.0)],
                errors: Vec::new(),
            },
            Series {
                label: "eta=1.0".into(),
                points: vec![(10.0, 40.0), (100.0, 25.0), (1000.0, 12.0)],
                errors: Vec::new(),
            },
        ];
        let ticks: Vec<(f64, String)> = [10.0, 100.0, 1000.0].iter().map(|&x| (x, format!("{x}"))).collect();
        let svg = line_chart("fid", "steps", "fid", &lines, &ticks);
        assert!(svg.contains(">eta=0.0</text>") && svg.contains(">eta=1.0</text>"), "{svg}");
        assert!(svg.contains("steps (log scale)"));
        let first = xy(&svg, 0);
        // Equal ratios are equal distances on a log axis.
        assert!(((first[1].0 - first[0].0) - (first[2].0 - first[1].0)).abs() < 0.2, "{first:?}");
        assert_eq!(svg.matches("<polyline").count(), 2);
    }

    #[test]
    fn the_legend_the_title_and_the_axis_titles_fit_inside_the_chart() {
        let lines = [
            Series { label: "scale_shift=false".into(), points: vec![(1.0, 3.0), (2.0, 2.0)], errors: vec![] },
            Series {
                label: "scale_shift=true, channels=32, dropout=0.1".into(),
                points: vec![(1.0, 4.0), (2.0, 1.0)],
                errors: vec![],
            },
        ];
        let ticks = [(1.0, "1".to_string()), (2.0, "2".to_string())];
        let y_title = "FID (classifier features, lower is better)";
        let svg = line_chart("scores: FID against guidance strength w", "guidance strength w", y_title, &lines, &ticks);
        let width: f64 = svg.split("viewBox=\"0 0 ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        // Each label starts where the chart writes it and ends, at the widest, inside the box.
        for label in ["scale_shift=false", "scale_shift=true, channels=32, dropout=0.1", y_title] {
            let text_at = svg.find(&format!(">{label}</text>")).unwrap_or_else(|| panic!("{label} missing: {svg}"));
            let x: f64 = svg[..text_at].rsplit("x=\"").next().unwrap().split('"').next().unwrap().parse().unwrap();
            let end = x + label.chars().count() as f64 * 0.62 * FONT_SIZE;
            assert!(end <= width, "`{label}` ends at {end} of {width}");
            assert!(x + text_width(label, FONT_SIZE) <= width, "`{label}` at {x} in {width}");
        }
        assert!(svg.contains(">guidance strength w</text>"));
    }
}
