//! Scatter plots of 2-D point sets (data against samples), one colour per set, as PNG.
//!
//! Text (title, axes, legend) needs a system font through plotters' `ttf` backend; where
//! none is installed the plot is drawn without text rather than failing.

use std::path::Path;

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use plotters::prelude::*;
use tch::{Device, Kind};

use crate::data::Dataset;
use crate::params::input;

pub use difflow_core::params::plot::ScatterParams;

/// `plot … = scatter { of = [stages with 2-D points] }`, titled with the stage's name.
pub fn run(job: &Job, params: &ScatterParams, out: &Path) -> Result<()> {
    let mut series = Vec::new();
    for stage in &params.of {
        let (name, of) = input(job, stage)?;
        let data = Dataset::read(&of.dir).with_context(|| format!("cannot read the points of `{name}`"))?;
        if data.meta.is_images() || data.meta.shape != [2] {
            bail!("`{name}` holds items of shape {:?}; a scatter plot needs 2-D points", data.meta.shape);
        }
        let flat: Vec<f32> = Vec::try_from(data.values.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        let points = flat.chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect();
        series.push(Series { name: name.to_string(), points });
    }
    write_scatter(&series, &job.instance, 800, out)
}

/// One named set of 2-D points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes the scatter plot of `series` to `path` (PNG, `size`×`size` pixels).
pub fn write_scatter(series: &[Series], title: &str, size: u32, path: &Path) -> Result<()> {
    if series.is_empty() || series.iter().all(|s| s.points.is_empty()) {
        bail!("nothing to plot: every point set is empty");
    }
    let (mut lo, mut hi) = ((f64::MAX, f64::MAX), (f64::MIN, f64::MIN));
    for (x, y) in series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite()) {
        lo = (lo.0.min(*x), lo.1.min(*y));
        hi = (hi.0.max(*x), hi.1.max(*y));
    }
    // A square window around all points, with a margin.
    let half = ((hi.0 - lo.0).max(hi.1 - lo.1) / 2.0).max(1e-6) * 1.1;
    let centre = ((lo.0 + hi.0) / 2.0, (lo.1 + hi.1) / 2.0);
    let x_range = centre.0 - half..centre.0 + half;
    let y_range = centre.1 - half..centre.1 + half;
    match draw(series, title, size, path, x_range.clone(), y_range.clone(), true) {
        Ok(()) => Ok(()),
        Err(with_text) => {
            draw(series, title, size, path, x_range, y_range, false).map_err(|e| {
                anyhow::anyhow!("cannot draw the scatter plot {}: {e} (with text: {with_text})", path.display())
            })?;
            crate::progress::log(format!(
                "the scatter plot has no title or legend: no usable font ({with_text}); install a TrueType font \
                 (e.g. Debian's fonts-dejavu-core) for text"
            ));
            Ok(())
        }
    }
}

fn draw(
    series: &[Series],
    title: &str,
    size: u32,
    path: &Path,
    x_range: std::ops::Range<f64>,
    y_range: std::ops::Range<f64>,
    text: bool,
) -> std::result::Result<(), String> {
    let root = super::white_canvas(path, (size, size))?;
    let caption = text.then_some(super::Caption { title, font_size: 22, label_room: (32, 40) });
    let mut chart =
        super::chart_on(&root, 12, caption).build_cartesian_2d(x_range, y_range).map_err(|e| e.to_string())?;
    if text {
        chart.configure_mesh().light_line_style(WHITE.mix(0.0)).draw().map_err(|e| e.to_string())?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    // Fewer, larger points plot more solidly; many points get smaller and translucent.
    let radius = |n: usize| if n > 5000 { 1 } else { 2 };
    for (i, s) in series.iter().enumerate() {
        let colour = super::COLOURS[i % super::COLOURS.len()];
        let style = colour.mix(0.6).filled();
        let r = radius(s.points.len());
        let drawn = chart
            .draw_series(s.points.iter().map(|&(x, y)| Circle::new((x, y), r, style)))
            .map_err(|e| e.to_string())?;
        if text {
            drawn
                .label(format!("{} ({})", s.name, s.points.len()))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
