//! The `plot` stage, one module per variant (PNG via plotters / image, GIF for
//! trajectories), and the image grid that sample stages write too.

pub mod curve;
pub mod forward;
pub mod grid;
pub mod loss;
pub mod scatter;
pub mod schedules;
pub mod trajectory;

use std::path::Path;

use anyhow::{Context, Result};
use difflow_core::job::Job;
use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, ChartBuilder, DrawingArea, DrawingBackend, IntoDrawingArea, RGBColor, WHITE};
use tch::Tensor;

use crate::params::job_variant_params;

pub const PLOT_FILE: &str = "plot.png";

pub use difflow_core::params::plot::PlotParams;

/// Runs a `plot` stage: `plot.png` in the output folder (and `plot.gif` for a trajectory).
pub fn run(job: &Job) -> Result<()> {
    let png = job.out_dir.join(PLOT_FILE);
    grid::create_parent(&png)?;
    match job_variant_params::<PlotParams>(job)? {
        PlotParams::Grid(p) => grid::run(job, &p, &png),
        PlotParams::Scatter(p) => scatter::run(job, &p, &png),
        PlotParams::Forward(p) => forward::run(job, &p, &png),
        PlotParams::Trajectory(p) => trajectory::run(job, &p, &png, &job.out_dir.join("plot.gif")),
        PlotParams::Schedules(p) => schedules::run(&p, &png),
        PlotParams::Loss(p) => loss::run(job, &p, &png),
        PlotParams::Curve(p) => curve::run(job, &p, &png),
    }
}

/// The line and point colours of every plot, in order (matplotlib's tab10, first eight).
pub const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A white bitmap of `size` pixels, written to `path` when presented.
pub(crate) fn white_canvas(path: &Path, size: (u32, u32)) -> Result<DrawingArea<BitMapBackend<'_>, Shift>, String> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    Ok(root)
}

/// The text around a chart: its title, the title's font size, and the room for the x and
/// y axis labels.
pub(crate) struct Caption<'t> {
    pub title: &'t str,
    pub font_size: u32,
    pub label_room: (u32, u32),
}

/// A chart on `area` inside `margin` pixels, with `caption` where text can be drawn.
pub(crate) fn chart_on<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    margin: u32,
    caption: Option<Caption<'_>>,
) -> ChartBuilder<'a, 'static, DB> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(margin);
    if let Some(c) = caption {
        builder
            .caption(c.title, ("sans-serif", c.font_size))
            .x_label_area_size(c.label_room.0)
            .y_label_area_size(c.label_room.1);
    }
    builder
}

/// Writes uint8 images [N, C, H, W] (C = 1 or 3) as one PNG grid of `columns` columns with a
/// 2-pixel white gutter, at their own size.
pub fn write_image_grid(images: &Tensor, columns: usize, path: &Path) -> Result<()> {
    grid::grid_image(images, columns, 1)?.save(path).with_context(|| format!("cannot write {}", path.display()))
}
