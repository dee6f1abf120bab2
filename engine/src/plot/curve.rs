//! Line plots of a metric along the reverse chain (`plot … = curve`): FID or IS of the
//! predicted x̂₀ against the number of sampling steps taken, as PNG.
//!
//! Like the scatter plots, text needs a system font; without one the curve is drawn bare.

use std::path::Path;

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use plotters::prelude::*;
use serde_json::{json, Value};

use crate::metrics::entry::side;
use crate::metrics::features::Extractors;
use crate::metrics::trajectory::{trajectory_every, trajectory_metrics, TRAJECTORY_FILE};
use crate::params::input;

pub use difflow_core::params::plot::{CurveMetric, CurveParams};

/// One (x, y) per kept trajectory point.
pub struct Curve<'a> {
    pub points: &'a [(f64, f64)],
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
}

/// Writes the curve to `path` (PNG, width×height pixels).
pub fn write_curve(curve: &Curve, width: u32, height: u32, path: &Path) -> Result<()> {
    let finite: Vec<(f64, f64)> =
        curve.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if finite.is_empty() {
        bail!("nothing to plot: the curve has no finite points");
    }
    let (x_lo, x_hi) = finite.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (y_lo, y_hi) = finite.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let x_pad = ((x_hi - x_lo) * 0.03).max(0.5);
    let y_pad = ((y_hi - y_lo) * 0.08).max(1e-3 * y_hi.abs().max(1.0));
    let ranges = (x_lo - x_pad..x_hi + x_pad, y_lo - y_pad..y_hi + y_pad);
    match draw(curve, &finite, width, height, path, ranges.clone(), true) {
        Ok(()) => Ok(()),
        Err(with_text) => draw(curve, &finite, width, height, path, ranges, false)
            .map_err(|e| anyhow::anyhow!("cannot draw the curve {}: {e} (with text: {with_text})", path.display())),
    }
}

type Ranges = (std::ops::Range<f64>, std::ops::Range<f64>);

fn draw(
    curve: &Curve,
    points: &[(f64, f64)],
    width: u32,
    height: u32,
    path: &Path,
    (x_range, y_range): Ranges,
    text: bool,
) -> std::result::Result<(), String> {
    let root = super::white_canvas(path, (width, height))?;
    let caption = text.then_some(super::Caption { title: curve.title, font_size: 24, label_room: (56, 84) });
    let mut chart =
        super::chart_on(&root, 16, caption).build_cartesian_2d(x_range, y_range).map_err(|e| e.to_string())?;
    if text {
        chart
            .configure_mesh()
            .x_desc(curve.x_label)
            .y_desc(curve.y_label)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .x_label_formatter(&|v| super::loss::tick_label(*v))
            .y_label_formatter(&|v| super::loss::tick_label(*v))
            .light_line_style(BLACK.mix(0.05))
            .draw()
            .map_err(|e| e.to_string())?;
    } else {
        chart.configure_mesh().x_labels(0).y_labels(0).draw().map_err(|e| e.to_string())?;
    }
    let colour = super::COLOURS[0];
    chart.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2))).map_err(|e| e.to_string())?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// `plot … = curve { of = <sample stage with trajectory>, y = "fid" | "is", reference }`:
/// the metric of x̂₀ at each kept trajectory point against the sampling steps taken, as
/// `plot.png`, with the numbers in `curve.json`.
pub fn run(job: &Job, params: &CurveParams, out: &Path) -> Result<()> {
    let device = crate::device::resolve(&job.device)?;
    let (name, of) = input(job, &params.of)?;
    let path = of.dir.join(TRAJECTORY_FILE);
    if !path.exists() {
        bail!("`{name}` kept no trajectory: set `trajectory = k` (keep every k-th step) in that sample stage");
    }
    let (fid, is) = match params.y {
        CurveMetric::Fid => (true, false),
        CurveMetric::Is => (false, true),
    };
    let mut ex = Extractors::new(job, &params.features, device);
    let reference = if fid {
        if params.reference.is_none() {
            bail!("`y = \"fid\"` needs `reference = <a dataset or sample stage>` to compare against");
        }
        Some(side(job, None, params.reference.as_ref(), "reference", &mut ex)?)
    } else {
        None
    };
    let every = trajectory_every(&of.params, name)?;
    let points = trajectory_metrics(&path, every, &mut ex, reference.as_ref(), fid, is)?;
    if points.is_empty() {
        bail!("`{name}` holds no image trajectory to measure");
    }
    let key = if fid { "fid" } else { "is_mean" };
    let xy: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let x = p.get("step").and_then(Value::as_f64).unwrap_or(i as f64);
            (x, p.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN))
        })
        .collect();
    std::fs::create_dir_all(&job.out_dir).with_context(|| format!("cannot create {}", job.out_dir.display()))?;
    let curve_json = job.out_dir.join("curve.json");
    std::fs::write(&curve_json, serde_json::to_string_pretty(&json!({ "trajectory": points }))?)
        .with_context(|| format!("cannot write {}", curve_json.display()))?;
    let title = format!("{} of the predicted x0 along the reverse chain of {name}", if fid { "FID" } else { "IS" });
    let x_label = if every > 0 { "sampling steps taken" } else { "trajectory point" };
    let curve = Curve { points: &xy, title: &title, x_label, y_label: if fid { "FID" } else { "IS" } };
    write_curve(&curve, 800, 500, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_of_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        let points = [(0.0, 300.0), (25.0, 180.0), (50.0, 60.0), (75.0, 20.0)];
        let curve = Curve { points: &points, title: "FID of x̂₀", x_label: "sampling steps", y_label: "FID" };
        write_curve(&curve, 640, 400, &path).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (640, 400));
        // Something besides the white background was drawn.
        assert!(img.to_rgb8().pixels().any(|p| p.0 != [255, 255, 255]));
    }

    #[test]
    fn refuses_an_empty_curve() {
        let dir = tempfile::tempdir().unwrap();
        let curve = Curve { points: &[(0.0, f64::NAN)], title: "", x_label: "", y_label: "" };
        assert!(write_curve(&curve, 100, 100, &dir.path().join("c.png")).is_err());
    }
}
