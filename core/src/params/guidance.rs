//! The `guidance` kind: conditioning at sampling time.

use serde::{Deserialize, Serialize};

use crate::job::StageRef;

/// A `guidance` config object (`kind` ignored), decoded by its variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum GuidanceConfig {
    /// Classifier-free guidance with weight w, applied where σ lies in `interval` (empty:
    /// at every step).
    Cfg {
        scale: f64,
        #[serde(default)]
        interval: Vec<f64>,
    },
    /// Classifier guidance with gradient scale s by a noisy classifier stage.
    Classifier { model: StageRef, scale: f64 },
}

/// Classifier-free guidance limited to the noise levels σ_lo < σ ≤ σ_hi (Kynkäänniemi et
/// al. 2024, "Applying Guidance in a Limited Interval Improves Sample and Distribution
/// Quality in Diffusion Models"); outside it the step is plain conditional sampling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CfgInterval {
    pub low: f64,
    pub high: f64,
}

impl CfgInterval {
    /// The interval an `interval = [σ_lo, σ_hi]` list stands for (`[]`: none, every step
    /// guided), or why it is neither.
    pub fn from_list(list: &[f64]) -> Result<Option<CfgInterval>, String> {
        match list {
            [] => Ok(None),
            [low, high] if low < high => Ok(Some(CfgInterval { low: *low, high: *high })),
            [low, high] => Err(format!("the interval's σ_lo ({low}) must be below its σ_hi ({high})")),
            _ => Err(format!("the interval is [σ_lo, σ_hi], two numbers, or [] (every step); found {}", list.len())),
        }
    }

    /// The guidance strength at noise level σ: `scale` inside the interval, 0 outside.
    pub fn scale_at(interval: Option<CfgInterval>, scale: f64, sigma: f64) -> f64 {
        match interval {
            Some(i) if !(i.low < sigma && sigma <= i.high) => 0.0,
            _ => scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_applies_inside_the_half_open_interval_only() {
        let i = CfgInterval::from_list(&[0.28, 5.42]).unwrap();
        assert_eq!(CfgInterval::scale_at(i, 2.0, 0.28), 0.0);
        assert_eq!(CfgInterval::scale_at(i, 2.0, 0.29), 2.0);
        assert_eq!(CfgInterval::scale_at(i, 2.0, 5.42), 2.0);
        assert_eq!(CfgInterval::scale_at(i, 2.0, 80.0), 0.0);
        assert_eq!(CfgInterval::scale_at(None, 2.0, 80.0), 2.0);
        assert!(CfgInterval::from_list(&[5.0, 1.0]).is_err());
        assert!(CfgInterval::from_list(&[1.0]).is_err());
        assert_eq!(CfgInterval::from_list(&[]), Ok(None));
    }
}
