//! Noise schedules and every derived float64 table (Ho et al. 2020; Nichol & Dhariwal
//! 2021; Chen 2023; Lin et al. 2024 for zero terminal SNR). This is the one place where
//! the schedule arithmetic lives: the engine turns these tables into tensors, and
//! `difflow show` prints them without loading libtorch.

use serde::{Deserialize, Serialize};

mod validity;
pub use validity::ScheduleProblem;

/// The β schedule of a `schedule` declaration, after defaults are filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum ScheduleSpec {
    Linear {
        steps: usize,
        start: f64,
        end: f64,
        scale_with_steps: bool,
        zero_terminal_snr: bool,
    },
    Cosine {
        steps: usize,
        s: f64,
        max_beta: f64,
        zero_terminal_snr: bool,
    },
    Sigmoid {
        steps: usize,
        start: f64,
        end: f64,
        tau: f64,
        zero_terminal_snr: bool,
    },
    /// β given step by step: a pretrained model's schedule that has no variant above
    /// (diffusers' `sigmoid` β schedule, or its `trained_betas`). Never written in a pipeline.
    Betas {
        betas: Vec<f64>,
    },
}

/// The largest β a continuous-time schedule may produce (Nichol & Dhariwal 2021): β close
/// to 1 near t = T makes the reverse process singular.
pub const SIGMOID_MAX_BETA: f64 = 0.999;

/// The most steps a schedule may have: every derived table holds one float64 per step, and
/// published schedules use at most a few thousand.
pub const MAX_STEPS: usize = 100_000;

impl ScheduleSpec {
    /// Decodes and validates a `schedule` config object as the front end fills it (every
    /// default written, `kind` ignored): `{"kind": "schedule", "variant": "cosine", …}`.
    pub fn from_config(config: &serde_json::Value) -> Result<ScheduleSpec, String> {
        let spec = ScheduleSpec::decode(config)?;
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    /// Decodes a `schedule` config object without judging its numbers (see [`Self::validate`]).
    pub fn decode(config: &serde_json::Value) -> Result<ScheduleSpec, String> {
        ScheduleSpec::deserialize(config).map_err(|e| format!("the schedule {config}: {e}"))
    }

    pub fn steps(&self) -> usize {
        match self {
            ScheduleSpec::Linear { steps, .. }
            | ScheduleSpec::Cosine { steps, .. }
            | ScheduleSpec::Sigmoid { steps, .. } => *steps,
            ScheduleSpec::Betas { betas } => betas.len(),
        }
    }

    pub fn zero_terminal_snr(&self) -> bool {
        match self {
            ScheduleSpec::Linear { zero_terminal_snr, .. }
            | ScheduleSpec::Cosine { zero_terminal_snr, .. }
            | ScheduleSpec::Sigmoid { zero_terminal_snr, .. } => *zero_terminal_snr,
            ScheduleSpec::Betas { .. } => false,
        }
    }

    /// β_1 … β_T (index 0 is the first step).
    pub fn betas(&self) -> Vec<f64> {
        let betas = match *self {
            ScheduleSpec::Linear { steps, start, end, scale_with_steps, .. } => {
                // Ho et al. chose start/end for T = 1000; IDDPM scales them by 1000/T so
                // that any T gives the same overall noise level.
                let scale = if scale_with_steps { 1000.0 / steps as f64 } else { 1.0 };
                linspace(scale * start, scale * end, steps)
            }
            ScheduleSpec::Cosine { steps, s, max_beta, .. } => {
                let alpha_bar = |t: f64| ((t + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos().powi(2);
                betas_from_alpha_bar(steps, alpha_bar, max_beta)
            }
            ScheduleSpec::Sigmoid { steps, start, end, tau, .. } => {
                let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
                let v_start = sigmoid(start / tau);
                let v_end = sigmoid(end / tau);
                let alpha_bar = |t: f64| {
                    let v = sigmoid((t * (end - start) + start) / tau);
                    ((v_end - v) / (v_end - v_start)).clamp(1e-9, 1.0)
                };
                betas_from_alpha_bar(steps, alpha_bar, SIGMOID_MAX_BETA)
            }
            ScheduleSpec::Betas { ref betas } => betas.clone(),
        };
        if self.zero_terminal_snr() {
            rescale_zero_terminal_snr(&betas)
        } else {
            betas
        }
    }

    pub fn tables(&self) -> DiffusionTables {
        DiffusionTables::from_betas(self.betas())
    }
}

pub fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    (0..n).map(|i| start + (end - start) * i as f64 / (n - 1) as f64).collect()
}

/// β_i = min(1 − ᾱ((i+1)/T) / ᾱ(i/T), max_beta) for a continuous ᾱ on [0, 1].
fn betas_from_alpha_bar(steps: usize, alpha_bar: impl Fn(f64) -> f64, max_beta: f64) -> Vec<f64> {
    (0..steps)
        .map(|i| {
            let t1 = i as f64 / steps as f64;
            let t2 = (i + 1) as f64 / steps as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta)
        })
        .collect()
}

/// Lin et al. 2024, Algorithm 1: shift and scale √ᾱ so that ᾱ_T = 0 and ᾱ_1 is unchanged.
pub fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut sqrt_ab: Vec<f64> = cumprod(betas.iter().map(|b| 1.0 - b)).into_iter().map(f64::sqrt).collect();
    let first = sqrt_ab[0];
    let last = *sqrt_ab.last().unwrap();
    for v in sqrt_ab.iter_mut() {
        *v = (*v - last) * first / (first - last);
    }
    let ab: Vec<f64> = sqrt_ab.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(ab.len());
    out.push(1.0 - ab[0]);
    for i in 1..ab.len() {
        out.push(1.0 - ab[i] / ab[i - 1]);
    }
    out
}

fn cumprod(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 1.0;
    values
        .map(|v| {
            acc *= v;
            acc
        })
        .collect()
}

/// Every per-step quantity the forward process, the posterior q(x_{t-1} | x_t, x_0), the
/// samplers and the variational bound need, in float64 (improved-diffusion's
/// `GaussianDiffusion.__init__`). Index i is timestep t = i + 1 in the papers' notation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionTables {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    pub alphas_cumprod_prev: Vec<f64>,
    pub alphas_cumprod_next: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    pub log_one_minus_alphas_cumprod: Vec<f64>,
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    pub posterior_variance: Vec<f64>,
    /// log of the posterior variance with the t = 1 entry (which is 0) replaced by the
    /// t = 2 entry, so the log stays finite.
    pub posterior_log_variance_clipped: Vec<f64>,
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
    /// ᾱ / (1 − ᾱ).
    pub snr: Vec<f64>,
}

impl DiffusionTables {
    pub fn from_betas(betas: Vec<f64>) -> Self {
        let n = betas.len();
        assert!(n > 0, "a schedule needs at least one step");
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let ab = cumprod(alphas.iter().copied());
        let ab_prev: Vec<f64> = std::iter::once(1.0).chain(ab[..n - 1].iter().copied()).collect();
        let ab_next: Vec<f64> = ab[1..].iter().copied().chain(std::iter::once(0.0)).collect();
        let posterior_variance: Vec<f64> = (0..n).map(|i| betas[i] * (1.0 - ab_prev[i]) / (1.0 - ab[i])).collect();
        let clip_first = if n > 1 { posterior_variance[1] } else { betas[0] };
        let posterior_log_variance_clipped =
            std::iter::once(clip_first).chain(posterior_variance[1..].iter().copied()).map(f64::ln).collect();
        DiffusionTables {
            alphas_cumprod_prev: ab_prev.clone(),
            alphas_cumprod_next: ab_next,
            sqrt_alphas_cumprod: ab.iter().map(|a| a.sqrt()).collect(),
            sqrt_one_minus_alphas_cumprod: ab.iter().map(|a| (1.0 - a).sqrt()).collect(),
            log_one_minus_alphas_cumprod: ab.iter().map(|a| (1.0 - a).ln()).collect(),
            sqrt_recip_alphas_cumprod: ab.iter().map(|a| (1.0 / a).sqrt()).collect(),
            sqrt_recipm1_alphas_cumprod: ab.iter().map(|a| (1.0 / a - 1.0).sqrt()).collect(),
            posterior_mean_coef1: (0..n).map(|i| betas[i] * ab_prev[i].sqrt() / (1.0 - ab[i])).collect(),
            posterior_mean_coef2: (0..n).map(|i| (1.0 - ab_prev[i]) * alphas[i].sqrt() / (1.0 - ab[i])).collect(),
            posterior_variance,
            posterior_log_variance_clipped,
            snr: ab.iter().map(|a| a / (1.0 - a)).collect(),
            alphas_cumprod: ab,
            betas,
        }
    }

    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// The tables of the process restricted to `use_timesteps` (ascending, 0-based):
    /// β'_k = 1 − ᾱ_{t_k} / ᾱ_{t_{k−1}} (IDDPM §4 respacing). The model is still called
    /// with the original timestep `use_timesteps[k]`.
    pub fn respaced(&self, use_timesteps: &[usize]) -> DiffusionTables {
        let mut last = 1.0;
        let betas = use_timesteps
            .iter()
            .map(|&t| {
                let ab = self.alphas_cumprod[t];
                let beta = 1.0 - ab / last;
                last = ab;
                beta
            })
            .collect();
        DiffusionTables::from_betas(betas)
    }
}

/// How a sampler with fewer steps than the schedule picks its timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// Evenly spaced from the first to the last timestep, rounded (IDDPM's `space_timesteps`).
    Uniform,
    /// (linspace(0, √(0.8 T), n))², the DDIM paper's CIFAR-10 choice.
    Quadratic,
    /// round(T, T − T/n, …) − 1: always includes the last timestep (Lin et al. 2024).
    Trailing,
}

/// The ascending, distinct 0-based timesteps a sampler with `count` steps visits out of
/// `steps`. `count` must be in 1..=steps.
pub fn space_timesteps(steps: usize, count: usize, spacing: Spacing) -> Vec<usize> {
    assert!(count >= 1 && count <= steps, "sampler steps must be in 1..={steps}");
    let mut ts: Vec<usize> = match spacing {
        Spacing::Uniform => {
            if count == 1 {
                vec![steps - 1]
            } else {
                let stride = (steps - 1) as f64 / (count - 1) as f64;
                (0..count).map(|i| (i as f64 * stride).round() as usize).collect()
            }
        }
        Spacing::Quadratic => {
            let top = (steps as f64 * 0.8).sqrt();
            let n = count.max(2);
            (0..count).map(|i| ((top * i as f64 / (n - 1) as f64).powi(2)) as usize).collect()
        }
        Spacing::Trailing => {
            let stride = steps as f64 / count as f64;
            (0..count).map(|i| ((steps as f64 - i as f64 * stride).round() as usize).saturating_sub(1)).collect()
        }
    };
    ts.sort_unstable();
    ts.dedup();
    ts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_ho_et_al_at_1000_steps() {
        let spec = ScheduleSpec::Linear {
            steps: 1000,
            start: 1e-4,
            end: 0.02,
            scale_with_steps: true,
            zero_terminal_snr: false,
        };
        let b = spec.betas();
        assert_eq!(b.len(), 1000);
        assert!((b[0] - 1e-4).abs() < 1e-15);
        assert!((b[999] - 0.02).abs() < 1e-15);
    }

    #[test]
    fn zero_terminal_snr_ends_at_zero() {
        let spec = ScheduleSpec::Linear {
            steps: 1000,
            start: 1e-4,
            end: 0.02,
            scale_with_steps: true,
            zero_terminal_snr: true,
        };
        let t = spec.tables();
        assert!(t.alphas_cumprod[999].abs() < 1e-12);
        assert!((t.betas[999] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn spacings_are_distinct_and_in_range() {
        for spacing in [Spacing::Uniform, Spacing::Quadratic, Spacing::Trailing] {
            let ts = space_timesteps(1000, 50, spacing);
            assert!(ts.windows(2).all(|w| w[0] < w[1]));
            assert!(*ts.last().unwrap() < 1000);
        }
        assert_eq!(space_timesteps(1000, 50, Spacing::Uniform).last(), Some(&999));
        assert_eq!(space_timesteps(1000, 50, Spacing::Trailing).last(), Some(&999));
        assert_eq!(space_timesteps(10, 10, Spacing::Uniform), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn respacing_all_steps_is_identity() {
        let t = ScheduleSpec::Cosine { steps: 100, s: 0.008, max_beta: 0.999, zero_terminal_snr: false }.tables();
        let r = t.respaced(&(0..100).collect::<Vec<_>>());
        for (a, b) in t.betas.iter().zip(&r.betas) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
