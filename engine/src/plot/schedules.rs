//! `plot … = schedules { of = [schedule configs] }`: ᾱ_t (left) and log SNR(t) =
//! log(ᾱ_t / (1 − ᾱ_t)) (right) against t/T, from the float64 tables, one colour per
//! schedule.

use anyhow::{anyhow, Result};

use plotters::chart::SeriesLabelPosition;

use super::loss::{write_panels, Line, Panel};

/// A legend label: the variant and its keys (`cosine T=1000 s=0.008`).
fn label(config: &serde_json::Value) -> String {
    let mut out = config.get("variant").and_then(|v| v.as_str()).unwrap_or("schedule").to_string();
    if let Some(map) = config.as_object() {
        for (k, v) in map {
            if k == "kind" || k == "variant" || v.is_null() || v == &serde_json::Value::Bool(false) {
                continue;
            }
            let key = if k == "steps" { "T" } else { k };
            out.push_str(&format!(" {key}={v}"));
        }
    }
    out
}

pub use difflow_core::params::plot::SchedulesParams;

pub fn run(params: &SchedulesParams, out: &std::path::Path) -> Result<()> {
    let configs = &params.of;
    let (mut alpha, mut snr) = (Vec::new(), Vec::new());
    for (i, spec) in configs.iter().enumerate() {
        spec.validate().map_err(|e| anyhow!("the schedule {}: {e}", i + 1))?;
        let tables = spec.tables();
        let config = &serde_json::to_value(spec)?;
        let steps = tables.steps() as f64;
        let x = |t: usize| (t + 1) as f64 / steps;
        let ab = &tables.alphas_cumprod;
        alpha.push(Line {
            name: label(config),
            points: ab.iter().enumerate().map(|(t, &a)| (x(t), a)).collect(),
            faint: false,
            colour: i,
        });
        // ᾱ_T = 0 (zero terminal SNR) has log SNR = −∞: that point is left out.
        snr.push(Line {
            name: label(config),
            points: ab
                .iter()
                .enumerate()
                .filter(|(_, &a)| a > 0.0)
                .map(|(t, &a)| (x(t), (a / (1.0 - a)).ln()))
                .collect(),
            faint: false,
            colour: i,
        });
    }
    // One legend for both panels, where log SNR leaves room: its lower left.
    let panels = [
        Panel {
            title: "ᾱ_t".into(),
            x_label: "t / T".into(),
            y_label: "ᾱ_t".into(),
            lines: alpha,
            log_y: false,
            legend: None,
        },
        Panel {
            title: "log SNR".into(),
            x_label: "t / T".into(),
            y_label: "log SNR(t)".into(),
            lines: snr,
            log_y: false,
            legend: Some(SeriesLabelPosition::LowerLeft),
        },
    ];
    // Two panels in the report's 1120-pixel column without scaling.
    write_panels(&panels, 560, 440, out)
}
