//! The `train` stage (variant `diffusion`): its parameters, and the per-step arithmetic of
//! the training recipe that the checker documents and the engine applies: the learning rate
//! at each step (warm-up, then constant, cosine or linear decay), the EMA's decay with
//! warm-up, and the Min-SNR-γ loss weights (Hang et al. 2023).

use serde::{Deserialize, Serialize};

use crate::job::StageRef;
use crate::params::model::Prediction;

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// MSE on the prediction target (ε, v or x₀).
    Simple,
    /// simple + λ·L_vlb with λ = 0.001 and the mean stopped from the VLB's gradient, so the
    /// VLB term trains only the learned variance (IDDPM §3.1).
    Hybrid,
    /// The per-timestep variational bound term alone (trains mean and variance).
    Vlb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Bf16,
}

/// How each item's MSE is weighted by its noise level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Every timestep alike (Ho et al. 2020's L_simple).
    Uniform,
    /// Min-SNR-γ (Hang et al. 2023): the x₀-MSE weighted by min(SNR, γ).
    MinSnr,
}

/// The learning rate after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    Constant,
    /// Half a cosine from `lr` down to the floor at `steps` (diffusers'
    /// `get_cosine_schedule_with_warmup`).
    Cosine,
    /// A straight line from `lr` down to the floor at `steps` (diffusers'
    /// `get_linear_schedule_with_warmup`).
    Linear,
}

/// γ of Min-SNR-γ when `snr_gamma` is unset (the paper's choice).
pub const DEFAULT_SNR_GAMMA: f64 = 5.0;

/// How the network is wrapped into a denoiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precondition {
    /// Karras et al. 2022 (EDM): D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ)),
    /// trained on log-normal σ with the loss weight λ(σ).
    Edm,
}

/// EDM's σ_data, P_mean and P_std when unset (the paper's Table 1).
pub const EDM_SIGMA_DATA: f64 = 0.5;
pub const EDM_P_MEAN: f64 = -1.2;
pub const EDM_P_STD: f64 = 1.2;
/// The σ range EDM samples on when the sampler sets none.
pub const EDM_SIGMA_MIN: f64 = 0.002;
pub const EDM_SIGMA_MAX: f64 = 80.0;

/// An EDM-preconditioned denoiser's constants (Karras et al. 2022, Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Edm {
    pub sigma_data: f64,
    /// Training draws ln σ ~ N(p_mean, p_std²).
    pub p_mean: f64,
    pub p_std: f64,
}

impl Edm {
    /// c_skip = σ_d² / (σ² + σ_d²).
    pub fn c_skip(&self, sigma: f64) -> f64 {
        let sd2 = self.sigma_data * self.sigma_data;
        sd2 / (sigma * sigma + sd2)
    }

    /// c_out = σ σ_d / √(σ² + σ_d²).
    pub fn c_out(&self, sigma: f64) -> f64 {
        sigma * self.sigma_data / (sigma * sigma + self.sigma_data * self.sigma_data).sqrt()
    }

    /// c_in = 1 / √(σ² + σ_d²).
    pub fn c_in(&self, sigma: f64) -> f64 {
        1.0 / (sigma * sigma + self.sigma_data * self.sigma_data).sqrt()
    }

    /// c_noise = ln(σ)/4: the network's (real-valued) timestep.
    pub fn c_noise(sigma: f64) -> f64 {
        sigma.ln() / 4.0
    }

    /// The loss weight λ(σ) = (σ² + σ_d²)/(σ σ_d)² of ‖D(x; σ) − x₀‖², which makes the
    /// effective target of F unit-weighted: λ(σ) c_out(σ)² = 1.
    pub fn loss_weight(&self, sigma: f64) -> f64 {
        (sigma * sigma + self.sigma_data * self.sigma_data) / (sigma * self.sigma_data).powi(2)
    }
}

/// The parameters of a `train` stage (`variant` and `kind` ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// The `model` and `schedule` config objects, kept whole for the trained model's record.
    pub model: serde_json::Value,
    pub data: StageRef,
    pub schedule: serde_json::Value,
    pub loss: LossType,
    pub uncond_p: f64,
    pub steps: Option<usize>,
    pub epochs: Option<usize>,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub grad_clip: f64,
    pub ema: f64,
    pub seed: u64,
    pub precision: Precision,
    pub checkpoint_every: usize,
    /// Unset: uniform.
    pub weighting: Option<Weighting>,
    /// γ of Min-SNR-γ; unset: [`DEFAULT_SNR_GAMMA`].
    pub snr_gamma: Option<f64>,
    /// Unset: constant.
    pub lr_schedule: Option<LrSchedule>,
    /// The learning rate a decaying schedule ends at, as a fraction of `lr`; unset: 0.
    pub lr_floor: Option<f64>,
    /// Unset: the network is the schedule's ε, v or x₀ predictor.
    pub precondition: Option<Precondition>,
    /// EDM's constants; unset: [`EDM_SIGMA_DATA`], [`EDM_P_MEAN`], [`EDM_P_STD`].
    pub sigma_data: Option<f64>,
    pub p_mean: Option<f64>,
    pub p_std: Option<f64>,
}

impl TrainParams {
    /// The probability of dropping the label in a step: `uncond_p` for a class-conditional
    /// model of `classes` classes; an unconditional model (0) has none to drop, whatever
    /// the default says (`check` refuses an `uncond_p` written for one).
    pub fn label_drop(&self, classes: usize) -> f64 {
        if classes == 0 {
            0.0
        } else {
            self.uncond_p
        }
    }

    /// The EDM constants of an EDM-preconditioned run (None otherwise).
    pub fn edm(&self) -> Option<Edm> {
        self.precondition.map(|Precondition::Edm| Edm {
            sigma_data: self.sigma_data.unwrap_or(EDM_SIGMA_DATA),
            p_mean: self.p_mean.unwrap_or(EDM_P_MEAN),
            p_std: self.p_std.unwrap_or(EDM_P_STD),
        })
    }

    /// The learning-rate plan of a run of `steps` steps.
    pub fn lr_plan(&self, steps: usize) -> LrPlan {
        LrPlan {
            lr: self.lr,
            warmup: self.warmup,
            steps,
            schedule: self.lr_schedule.unwrap_or(LrSchedule::Constant),
            floor: self.lr_floor.unwrap_or(0.0),
        }
    }

    /// The per-timestep loss weights, None for uniform weighting.
    pub fn loss_weights(&self, alpha_bar: &[f64], prediction: Prediction) -> Option<Vec<f64>> {
        match self.weighting.unwrap_or(Weighting::Uniform) {
            Weighting::Uniform => None,
            Weighting::MinSnr => {
                Some(min_snr_weights(alpha_bar, self.snr_gamma.unwrap_or(DEFAULT_SNR_GAMMA), prediction))
            }
        }
    }
}

/// The learning rate at every step of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrPlan {
    pub lr: f64,
    pub warmup: usize,
    pub steps: usize,
    pub schedule: LrSchedule,
    /// The end of the decay as a fraction of `lr`.
    pub floor: f64,
}

impl LrPlan {
    /// The learning rate of update `step` (0-based): `lr` · min(1, (step + 1)/warmup) during
    /// warm-up, then `lr` · (floor + (1 − floor) · d(p)) with p = (step − warmup)/(steps −
    /// warmup) the share of the decay done, d(p) = ½(1 + cos πp) (cosine) or 1 − p (linear),
    /// 1 (constant). With floor 0 this is diffusers' schedule at the same step after warm-up.
    pub fn at(&self, step: usize) -> f64 {
        if self.warmup > 0 && step < self.warmup {
            return self.lr * ((step + 1) as f64 / self.warmup as f64).min(1.0);
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let done = ((step - self.warmup.min(step)) as f64 / span).min(1.0);
        let decay = match self.schedule {
            LrSchedule::Constant => return self.lr,
            LrSchedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
            LrSchedule::Linear => 1.0 - done,
        };
        self.lr * (self.floor + (1.0 - self.floor) * decay)
    }
}

/// The EMA's decay at update `step` (0-based): min(ema, (1 + step)/(10 + step)), so that a
/// short run is not dominated by the initial weights (IDDPM; diffusers' `EMAModel` with
/// `use_ema_warmup = False`'s `get_decay` at its optimisation step `step + 1`).
pub fn ema_decay(ema: f64, step: usize) -> f64 {
    ema.min((1.0 + step as f64) / (10.0 + step as f64))
}

/// Min-SNR-γ's weight per timestep of a schedule with cumulative products `alpha_bar`, for
/// the MSE on `prediction`'s target (diffusers' `compute_snr` and train_text_to_image.py):
/// min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v, min(SNR, γ) for x₀, where SNR =
/// ᾱ/(1 − ᾱ). At SNR = 0 (zero terminal SNR) ε's weight is its limit, 1.
pub fn min_snr_weights(alpha_bar: &[f64], gamma: f64, prediction: Prediction) -> Vec<f64> {
    alpha_bar
        .iter()
        .map(|&ab| {
            let snr = ab / (1.0 - ab);
            let clipped = snr.min(gamma);
            match prediction {
                Prediction::Eps if snr > 0.0 => clipped / snr,
                Prediction::Eps => 1.0,
                Prediction::V => clipped / (snr + 1.0),
                Prediction::X0 => clipped,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(schedule: LrSchedule, floor: f64) -> LrPlan {
        LrPlan { lr: 1.0, warmup: 10, steps: 110, schedule, floor }
    }

    #[test]
    fn schedules_warm_up_then_decay_to_their_floor() {
        for schedule in [LrSchedule::Constant, LrSchedule::Cosine, LrSchedule::Linear] {
            let p = plan(schedule, 0.1);
            assert_eq!(p.at(0), 0.1);
            assert_eq!(p.at(9), 1.0);
            assert_eq!(p.at(10), 1.0);
        }
        assert!((plan(LrSchedule::Cosine, 0.0).at(60) - 0.5).abs() < 1e-12);
        assert!((plan(LrSchedule::Linear, 0.2).at(60) - 0.6).abs() < 1e-12);
        assert!((plan(LrSchedule::Cosine, 0.2).at(110) - 0.2).abs() < 1e-12);
        assert_eq!(plan(LrSchedule::Constant, 0.2).at(109), 1.0);
        let no_warmup = LrPlan { warmup: 0, ..plan(LrSchedule::Linear, 0.0) };
        assert_eq!(no_warmup.at(0), 1.0);
    }

    #[test]
    fn edm_weighting_makes_the_network_target_unit_weighted() {
        let edm = Edm { sigma_data: 0.5, p_mean: -1.2, p_std: 1.2 };
        for sigma in [0.002, 0.3, 0.5, 4.0, 80.0] {
            let unit = edm.loss_weight(sigma) * edm.c_out(sigma).powi(2);
            assert!((unit - 1.0).abs() < 1e-12, "σ = {sigma}: {unit}");
            // D is the identity at σ = 0 and the data's mean (0) as σ → ∞.
            assert!(edm.c_skip(sigma) <= 1.0 && edm.c_in(sigma) * sigma < 1.0);
        }
        assert!((edm.c_skip(0.5) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn min_snr_weights_follow_the_prediction() {
        // SNR 1/3 (ᾱ = 0.25) and 9 (ᾱ = 0.9) with γ = 5.
        let ab = [0.25, 0.9, 0.0];
        let eps = min_snr_weights(&ab, 5.0, Prediction::Eps);
        assert!((eps[0] - 1.0).abs() < 1e-12 && (eps[1] - 5.0 / 9.0).abs() < 1e-12 && eps[2] == 1.0);
        let v = min_snr_weights(&ab, 5.0, Prediction::V);
        assert!((v[0] - 0.25).abs() < 1e-12 && (v[1] - 0.5).abs() < 1e-12 && v[2] == 0.0);
        let x0 = min_snr_weights(&ab, 5.0, Prediction::X0);
        assert!((x0[0] - 1.0 / 3.0).abs() < 1e-12 && x0[1] == 5.0);
    }
}
