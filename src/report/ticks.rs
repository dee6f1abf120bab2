//! Round axis ticks for the report's charts: steps of 1, 2 or 5 × 10^k, the axis
//! stretched to whole steps, labels with the decimals the step needs; and where the y
//! axis starts (at 0 when that is sensible, else the chart says so).

/// An axis from `lo` to `hi` with ticks every `step` (both ends are ticks).
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub step: f64,
}

impl Scale {
    /// The ticks from `lo` to `hi`.
    pub fn ticks(&self) -> Vec<f64> {
        let count = ((self.hi - self.lo) / self.step).round() as usize;
        (0..=count).map(|i| round_to_step(self.lo + i as f64 * self.step, self.step)).collect()
    }
}

/// About `target` intervals' worth of round steps over [lo, hi], widened to whole steps.
/// A single value gets a unit-wide axis around it.
pub fn nice_scale(lo: f64, hi: f64, target: usize) -> Scale {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        let pad = (lo.abs() * 0.1).max(1e-3);
        (lo - pad, hi + pad)
    };
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let lo = round_to_step((lo / step + 1e-6).floor() * step, step);
    let hi = round_to_step((hi / step - 1e-6).ceil() * step, step);
    Scale { lo, hi, step }
}

/// The 1, 2 or 5 × 10^k nearest `raw` (Heckbert's nice numbers).
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let power = 10f64.powi(raw.log10().floor() as i32);
    let fraction = raw / power;
    let nice = match fraction {
        f if f < 1.5 => 1.0,
        f if f < 3.0 => 2.0,
        f if f < 7.0 => 5.0,
        _ => 10.0,
    };
    nice * power
}

/// A tick label with the decimals the step shows (0.05 → two), no more.
pub fn label(v: f64, step: f64) -> String {
    let decimals = if step.is_finite() && step > 0.0 { (-step.log10() - 1e-9).ceil().clamp(0.0, 10.0) } else { 3.0 };
    let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
    format!("{v:.0$}", decimals as usize)
}

/// Ticks of a log axis from `lo` to `hi` (> 0): the 1, 2, 5 × 10^k inside, or only the
/// powers of ten when those are enough.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi >= lo) {
        return Vec::new();
    }
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let powers: Vec<f64> = (first..=last).map(|k| 10f64.powi(k)).filter(within).collect();
    if powers.len() >= 3 {
        return powers;
    }
    (first..=last).flat_map(|k| [1.0, 2.0, 5.0].map(|f| f * 10f64.powi(k))).filter(within).collect()
}

/// Where a y axis over values in [lo, hi] starts: at 0 for values in [0, 1] (accuracies,
/// rates) and for non-negative values where 0 costs less than half the height; else at
/// the data, and then `true`: the chart must say that its axis does not start at 0.
pub fn y_range(lo: f64, hi: f64) -> (f64, f64, bool) {
    if lo >= 0.0 && (hi <= 1.0 || lo <= hi / 2.0) {
        return (0.0, hi, false);
    }
    if hi <= 0.0 && hi >= lo / 2.0 {
        return (lo, 0.0, false);
    }
    (lo, hi, lo > 0.0 || hi < 0.0)
}

fn round_to_step(v: f64, step: f64) -> f64 {
    // Whole multiples of the step, without 0.30000000000000004.
    let decimals = (-step.log10()).ceil().clamp(0.0, 15.0) as i32 + 1;
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        let steps: Vec<f64> = [0.7, 1.0, 1.3, 2.5, 4.9, 7.5, 0.013, 3_000.0].map(nice_step).into();
        assert_eq!(steps, [0.5, 1.0, 1.0, 2.0, 5.0, 10.0, 0.01, 5_000.0]);
    }

    #[test]
    fn scales_end_on_whole_steps() {
        let s = nice_scale(0.0, 0.93, 5);
        assert_eq!(s, Scale { lo: 0.0, hi: 1.0, step: 0.2 });
        assert_eq!(s.ticks(), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let fid = nice_scale(8.519, 8.523, 4);
        assert!((fid.step - 0.001).abs() < 1e-12);
        assert_eq!(fid.ticks(), [8.519, 8.52, 8.521, 8.522, 8.523]);
        let wide = nice_scale(12.0, 487.0, 5);
        assert_eq!((wide.lo, wide.hi, wide.step), (0.0, 500.0, 100.0));
        let single = nice_scale(3.0, 3.0, 5);
        assert!(single.lo < 3.0 && single.hi > 3.0);
    }

    #[test]
    fn labels_show_the_decimals_of_the_step() {
        assert_eq!(label(8.5192, 0.0001), "8.5192");
        assert_eq!(label(2500.0, 500.0), "2500");
        assert_eq!(label(0.5, 0.05), "0.50");
        assert_eq!(label(0.4, 0.2), "0.4");
        assert_eq!(label(3.0, 1.0), "3");
        assert_eq!(label(-0.0, 0.1), "0.0");
    }

    #[test]
    fn log_axes_tick_at_round_numbers() {
        assert_eq!(log_ticks(10.0, 1000.0), [10.0, 100.0, 1000.0]);
        assert_eq!(log_ticks(5.0, 100.0), [5.0, 10.0, 20.0, 50.0, 100.0]);
    }

    #[test]
    fn y_axes_start_at_zero_where_sensible_and_say_so_otherwise() {
        assert_eq!(y_range(0.62, 0.97), (0.0, 0.97, false), "an accuracy");
        assert_eq!(y_range(3.0, 40.0), (0.0, 40.0, false));
        assert_eq!(y_range(120.0, 130.0), (120.0, 130.0, true), "a FID far from 0");
        assert_eq!(y_range(-2.0, 3.0), (-2.0, 3.0, false), "0 inside");
    }
}
