//! Line charts for the report, as self-contained SVG: a family swept over one numeric
//! coordinate (`scores[step=1000]`, `scores[step=2000]`, …) gets each metric drawn
//! against it, such as classifier accuracy against training step from one run.

use std::fmt::Write as _;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 320.0;
/// Left, right, top and bottom margins (room for tick labels and axis titles).
const MARGIN: (f64, f64, f64, f64) = (64.0, 20.0, 34.0, 48.0);
const TICKS: usize = 5;

/// The single sweep coordinate of a family and each member's numeric value of it, when
/// there are at least two members and every one has exactly that numeric coordinate.
pub fn numeric_axis(coords: &[Vec<(String, String)>]) -> Option<(String, Vec<f64>)> {
    let name = coords.first()?.first()?.0.clone();
    let xs = coords
        .iter()
        .map(|c| match c.as_slice() {
            [(k, v)] if *k == name => v.replace('_', "").parse::<f64>().ok().filter(|x| x.is_finite()),
            _ => None,
        })
        .collect::<Option<Vec<f64>>>()?;
    (xs.len() >= 2).then_some((name, xs))
}

/// An SVG line chart of `points` (sorted by x; non-finite y left out).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) -> String {
    let mut pts: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (x_lo, x_hi) = padded(pts.iter().map(|p| p.0));
    let (y_lo, y_hi) = padded(pts.iter().map(|p| p.1));
    let (left, right, top, bottom) = MARGIN;
    let (plot_w, plot_h) = (WIDTH - left - right, HEIGHT - top - bottom);
    let sx = |x: f64| left + (x - x_lo) / (x_hi - x_lo) * plot_w;
    let sy = |y: f64| top + (1.0 - (y - y_lo) / (y_hi - y_lo)) * plot_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#888\"/>"
    );
    for i in 0..TICKS {
        let f = i as f64 / (TICKS - 1) as f64;
        let (x, y) = (x_lo + f * (x_hi - x_lo), y_lo + f * (y_hi - y_lo));
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            sx(x),
            top + plot_h + 16.0,
            tick(x)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
             <line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            left - 6.0,
            sy(y) + 4.0,
            tick(y),
            left + plot_w,
            sy(y),
            sy(y)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        HEIGHT - 10.0,
        escape(x_label),
        top + plot_h / 2.0,
        escape(y_label)
    );
    let path: Vec<String> = pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
    let _ =
        writeln!(svg, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>", path.join(" "));
    for &(x, y) in &pts {
        let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#1f77b4\"/>", sx(x), sy(y));
    }
    svg.push_str("</svg>\n");
    svg
}

/// The range of the values with 5 % padding (a unit range around a single value).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.5 };
    (lo - pad, hi + pad)
}

fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(items: &[&[(&str, &str)]]) -> Vec<Vec<(String, String)>> {
        items.iter().map(|c| c.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).collect()
    }

    #[test]
    fn one_numeric_coordinate_is_an_axis() {
        let axis = numeric_axis(&coords(&[&[("step", "2_000")], &[("step", "500")]]));
        assert_eq!(axis, Some(("step".to_string(), vec![2000.0, 500.0])));
        assert_eq!(numeric_axis(&coords(&[&[("step", "500")]])), None, "one point is no curve");
        assert_eq!(numeric_axis(&coords(&[&[("sampler", "ddim")], &[("sampler", "ddpm")]])), None);
        assert_eq!(numeric_axis(&coords(&[&[("a", "1"), ("b", "2")], &[("a", "2"), ("b", "2")]])), None);
        assert_eq!(numeric_axis(&coords(&[&[("a", "1")], &[("b", "2")]])), None);
    }

    #[test]
    fn draws_every_point_in_x_order_inside_the_frame() {
        let svg = line_chart("acc <by> step", "step", "accuracy", &[(2000.0, 0.9), (500.0, 0.2), (1000.0, f64::NAN)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("acc &lt;by&gt; step"));
        assert_eq!(svg.matches("<circle").count(), 2);
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        let xy: Vec<(f64, f64)> = points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(xy.len(), 2);
        assert!(xy[0].0 < xy[1].0, "sorted by step");
        assert!(xy[0].1 > xy[1].1, "higher accuracy is drawn higher up");
        for (x, y) in xy {
            assert!((MARGIN.0..=WIDTH - MARGIN.1).contains(&x) && (MARGIN.2..=HEIGHT - MARGIN.3).contains(&y));
        }
    }
}
