//! `plot … = loss { of = [train stages] }`: training-loss curves (from each stage's
//! `loss.csv`) on a log axis, raw values faint and a moving average solid. Also the line
//! chart that the schedules plot shares.
//!
//! Text needs a system font through plotters' `ttf` backend; where none is installed the
//! chart is drawn without text rather than failing (as the scatter plot does).

use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use difflow_core::job::Job;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::artifacts::LOSS_FILE;
use crate::params::input;

/// One named curve.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn thin and translucent (raw values under a smoothed curve).
    pub faint: bool,
    pub colour: usize,
}

/// One panel of a line chart.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    pub log_y: bool,
    /// Where the legend goes (the corner the curves leave free); none: a neighbouring
    /// panel with the same lines has it.
    pub legend: Option<SeriesLabelPosition>,
}

fn range(panel: &Panel) -> Result<(Range<f64>, Range<f64>)> {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!panel.log_y || y > 0.0);
    let pts: Vec<(f64, f64)> = panel.lines.iter().flat_map(|l| l.points.iter().copied()).filter(finite).collect();
    if pts.is_empty() {
        bail!("nothing to plot in `{}`: no finite values", panel.title);
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if panel.log_y {
        Ok((x0..x1, y0 / 1.2..y1 * 1.2))
    } else {
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        Ok((x0..x1, y0 - pad..y1 + pad))
    }
}

fn draw_panel(area: &DrawingArea<BitMapBackend, Shift>, panel: &Panel, text: bool) -> Result<(), String> {
    let (xr, yr) = range(panel).map_err(|e| e.to_string())?;
    let caption = text.then_some(super::Caption { title: &panel.title, font_size: 24, label_room: (56, 84) });
    let mut builder = super::chart_on(area, 14, caption);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            {
                let mut mesh = chart.configure_mesh();
                if text {
                    // Sized to read at the report's scale (one pixel per pixel).
                    mesh.x_desc(panel.x_label.as_str())
                        .y_desc(panel.y_label.as_str())
                        .label_style(("sans-serif", 16))
                        .axis_desc_style(("sans-serif", 18))
                        .x_label_formatter(&|v| tick_label(*v))
                        .y_label_formatter(&|v| tick_label(*v));
                } else {
                    mesh.x_labels(0).y_labels(0);
                }
                mesh.draw().map_err(|e| e.to_string())?;
            }
            for line in &panel.lines {
                let colour = super::COLOURS[line.colour % super::COLOURS.len()];
                let style = if line.faint { colour.mix(0.25).stroke_width(1) } else { colour.stroke_width(2) };
                let pts = line.points.iter().copied().filter(|&(x, y)| x.is_finite() && y.is_finite());
                let pts: Vec<(f64, f64)> = pts.filter(|&(_, y)| !panel.log_y || y > 0.0).collect();
                let series = chart.draw_series(LineSeries::new(pts, style)).map_err(|e| e.to_string())?;
                if text && !line.faint && panel.legend.is_some() {
                    series
                        .label(line.name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
                }
            }
            if let (true, Some(position)) = (text, &panel.legend) {
                chart
                    .configure_series_labels()
                    .position(position.clone())
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .label_font(("sans-serif", 16))
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
        }};
    }
    if panel.log_y {
        body!(builder.build_cartesian_2d(xr, yr.log_scale()).map_err(|e| e.to_string())?);
    } else {
        body!(builder.build_cartesian_2d(xr, yr).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// An axis label with three significant digits and no trailing zeros: 600, 0.6, 0.05
/// (not 600.0 or 0.6000000000001, as the default formatting writes log-axis ticks).
pub fn tick_label(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Writes the panels side by side (`width` × `height` pixels per panel) as a PNG.
pub fn write_panels(panels: &[Panel], width: u32, height: u32, path: &Path) -> Result<()> {
    let draw = |text: bool| -> Result<(), String> {
        let root = super::white_canvas(path, (width * panels.len() as u32, height))?;
        for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(panels) {
            draw_panel(area, panel, text)?;
        }
        root.present().map_err(|e| e.to_string())
    };
    draw(true).or_else(|with_text| {
        draw(false).map_err(|e| anyhow!("cannot draw {}: {e} (with text: {with_text})", path.display()))
    })
}

/// Reads `step,loss` lines.
pub fn read_losses(path: &Path) -> Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut parts = line.split(',');
        let parse = |p: Option<&str>| p.and_then(|s| s.trim().parse::<f64>().ok());
        match (parse(parts.next()), parse(parts.next())) {
            (Some(step), Some(loss)) => out.push((step, loss)),
            _ => bail!("{} line {} is not `step,loss`: {line:?}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// A centred moving average over about 1/50 of the run (at least 1 step).
pub fn smooth(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let w = (points.len() / 50).max(1);
    let mut prefix = vec![0.0];
    for &(_, y) in points {
        prefix.push(prefix.last().unwrap() + y);
    }
    (0..points.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(w / 2), (i + w / 2 + 1).min(points.len()));
            (points[i].0, (prefix[b] - prefix[a]) / (b - a) as f64)
        })
        .collect()
}

pub use difflow_core::params::plot::LossParams;

pub fn run(job: &Job, params: &LossParams, out: &Path) -> Result<()> {
    let mut lines = Vec::new();
    for (i, stage) in params.of.iter().enumerate() {
        let (name, train) = input(job, stage)?;
        let losses = read_losses(&train.dir.join(LOSS_FILE)).with_context(|| format!("the loss log of `{name}`"))?;
        if losses.is_empty() {
            bail!("`{name}` logged no losses");
        }
        lines.push(Line { name: format!("{name} (raw)"), points: losses.clone(), faint: true, colour: i });
        lines.push(Line { name: name.to_string(), points: smooth(&losses), faint: false, colour: i });
    }
    // Loss curves fall from the upper left and flatten: the upper right is free.
    let panel = Panel {
        title: job.instance.clone(),
        x_label: "step".into(),
        y_label: "loss".into(),
        lines,
        log_y: true,
        legend: Some(SeriesLabelPosition::UpperRight),
    };
    write_panels(&[panel], 900, 560, out)
}

#[cfg(test)]
mod tests {
    use super::tick_label;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(600.0), "600");
        assert_eq!(tick_label(0.6000000000001), "0.6");
        assert_eq!(tick_label(0.05), "0.05");
        assert_eq!(tick_label(1.25), "1.25");
        assert_eq!(tick_label(12345.0), "12345");
        assert_eq!(tick_label(0.0), "0");
    }
}
