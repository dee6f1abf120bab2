//! The `sampler` kind: the reverse chain's variants, their keys as the schema documents
//! them ([`variants`]), how many steps each takes and which timesteps it visits. The engine
//! runs the step rules; the checker and the engine judge a sampler against a schedule with
//! the same methods. A new sampler is a variant of [`Sampler`], its entry in [`variants`]
//! and its step rule in the engine; the compiler lists the `match`es it needs.

use serde::{Deserialize, Serialize};

use crate::diffusion::schedule::{space_timesteps, Spacing};
use crate::schema::table::{def, en, ge, ge_le, gt, opt, variant};
use crate::schema::{KeySpec, Type, VariantSpec};

/// The variance Σ_θ(x_t, t) of the reverse step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    /// β̃_t, the posterior variance (its log clipped at t = 1).
    FixedSmall,
    /// β_t (with β̃_2 at t = 1, as improved-diffusion, so the decoder has a sane variance).
    FixedLarge,
    /// IDDPM's learned range: the network outputs v ∈ [-1, 1] and
    /// log Σ = (v+1)/2 · log β_t + (1 − (v+1)/2) · log β̃_t.
    Learned,
}

/// A `sampler` config object (`kind` ignored), decoded by its variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum Sampler {
    /// `steps` unset: every step of the schedule.
    Ddpm {
        variance: VarianceType,
        steps: Option<usize>,
    },
    Ddim {
        steps: usize,
        eta: f64,
        spacing: Spacing,
    },
    DpmSolver {
        steps: usize,
        order: usize,
    },
    /// Karras et al. 2022's samplers on σ steps ([`SigmaSteps`]), k-diffusion's
    /// `sample_euler`, `sample_heun` (two evaluations per step but the last) and
    /// `sample_euler_ancestral` (η = 1).
    Euler {
        steps: usize,
        rho: f64,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
    },
    Heun {
        steps: usize,
        rho: f64,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
    },
    EulerAncestral {
        steps: usize,
        rho: f64,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
    },
}

/// The schema's variants of the `sampler` kind, in reference order: one entry per variant
/// of [`Sampler`], its keys the variant's fields (`params/tests.rs` proves they agree).
pub(crate) fn variants() -> Vec<VariantSpec> {
    vec![
        variant(
            "ddpm",
            "ancestral sampling (Ho et al. 2020), optionally respaced (IDDPM)",
            vec![
                def(
                    "variance",
                    en(&["fixed_small", "fixed_large", "learned"]),
                    "\"fixed_small\"",
                    "reverse variance: posterior β̃_t, β_t, or the net's learned range (needs learn_sigma)",
                ),
                opt("steps", Type::Int, "respaced step count (unset: every step of the schedule)").range(ge(1.0)),
            ],
        ),
        variant(
            "ddim",
            "Song et al. 2021: deterministic at eta = 0, DDPM-like at eta = 1",
            vec![
                sampling_steps("50"),
                def("eta", Type::Float, "0", "stochasticity η").range(ge_le(0.0, 1.0)).title("DDIM η"),
                def(
                    "spacing",
                    en(&["uniform", "quadratic", "trailing"]),
                    "\"uniform\"",
                    "how the steps are picked from 1…T",
                ),
            ],
        ),
        variant(
            "dpm_solver",
            "DPM-Solver (Lu et al. 2022), multistep",
            vec![sampling_steps("20"), def("order", Type::Int, "2", "solver order").range(ge_le(1.0, 3.0))],
        ),
        variant(
            "euler",
            "Euler's method on Karras et al. 2022's σ steps (k-diffusion `sample_euler`)",
            sigma_keys("50"),
        ),
        variant(
            "heun",
            "Heun's 2nd-order method on Karras σ steps (EDM; 2 × steps − 1 network evaluations)",
            sigma_keys("18"),
        ),
        variant(
            "euler_ancestral",
            "ancestral Euler on Karras σ steps (k-diffusion `sample_euler_ancestral`, η = 1)",
            sigma_keys("50"),
        ),
    ]
}

/// `steps` of a sampler on the schedule's timesteps.
fn sampling_steps(default: &'static str) -> KeySpec {
    def("steps", Type::Int, default, "sampling steps (at most the schedule's steps)")
        .range(ge(1.0))
        .title("sampling steps")
}

/// The keys of a sampler on Karras σ steps. The net, trained on a discrete schedule, sees
/// x/√(σ² + 1) and the timestep whose σ = √((1 − ᾱ)/ᾱ) is nearest in log σ.
fn sigma_keys(steps: &'static str) -> Vec<KeySpec> {
    vec![
        def("steps", Type::Int, steps, "σ steps (each σ maps to its nearest timestep)")
            .range(ge(1.0))
            .title("sampling steps"),
        def("rho", Type::Float, "7", "ρ of the σ spacing: σ^(1/ρ) evenly spaced").range(gt(0.0)),
        opt("sigma_min", Type::Float, "smallest σ (unset: the schedule's σ at t = 1)").range(gt(0.0)),
        opt(
            "sigma_max",
            Type::Float,
            "largest σ (unset: the schedule's σ at t = T, which zero terminal SNR makes infinite: set it there)",
        )
        .range(gt(0.0)),
    ]
}

/// The σ steps of a Karras sampler: `steps` noise levels from σ_max down to σ_min spaced
/// evenly in σ^(1/ρ), then 0. Unset bounds are the schedule's own σ range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmaSteps {
    pub steps: usize,
    pub rho: f64,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
}

/// σ of each timestep of a discrete schedule, σ = √((1 − ᾱ)/ᾱ) (k-diffusion's
/// `DiscreteSchedule`): ascending; infinite where ᾱ = 0 (zero terminal SNR).
pub fn schedule_sigmas(alpha_bar: &[f64]) -> Vec<f64> {
    alpha_bar.iter().map(|ab| ((1.0 - ab) / ab).sqrt()).collect()
}

/// Karras et al. 2022, eq. 5 (k-diffusion's `get_sigmas_karras`): σ_i = (σ_max^(1/ρ) +
/// i/(n−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for i < n, with σ_n = 0 appended.
pub fn karras_sigmas(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    let ramp = |i: usize| if steps > 1 { i as f64 / (steps - 1) as f64 } else { 0.0 };
    (0..steps).map(|i| (hi + ramp(i) * (lo - hi)).powf(rho)).chain(std::iter::once(0.0)).collect()
}

/// Why a σ sampler's range does not fit a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SigmaProblem {
    /// `sigma_max` unset on a schedule whose largest σ is infinite (zero terminal SNR).
    InfiniteSigmaMax,
    /// The range is empty.
    MinNotBelowMax { sigma_min: f64, sigma_max: f64 },
}

impl std::fmt::Display for SigmaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            SigmaProblem::InfiniteSigmaMax => {
                f.write_str("the schedule's largest σ is infinite (zero terminal SNR): set the sampler's sigma_max")
            }
            SigmaProblem::MinNotBelowMax { sigma_min, sigma_max } => {
                write!(f, "the sampler's sigma_min ({sigma_min}) must be below its sigma_max ({sigma_max})")
            }
        }
    }
}

impl std::error::Error for SigmaProblem {}

impl SigmaSteps {
    /// The σ range (σ_min, σ_max): the set bounds, else `lowest` and `highest`, the net's
    /// own range (a discrete schedule's σ at t = 1 and t = T, [`schedule_sigmas`]).
    pub fn bounds(&self, lowest: f64, highest: f64) -> Result<(f64, f64), SigmaProblem> {
        let sigma_min = self.sigma_min.unwrap_or(lowest);
        let sigma_max = self.sigma_max.unwrap_or(highest);
        if !sigma_max.is_finite() {
            return Err(SigmaProblem::InfiniteSigmaMax);
        }
        if sigma_min >= sigma_max {
            return Err(SigmaProblem::MinNotBelowMax { sigma_min, sigma_max });
        }
        Ok((sigma_min, sigma_max))
    }
}

/// Why a sampler cannot run on a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepsProblem {
    pub steps: usize,
    pub schedule_steps: usize,
}

impl std::fmt::Display for StepsProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let StepsProblem { steps, schedule_steps } = self;
        write!(f, "sampler steps must be in 1..={schedule_steps} (the schedule's steps), not {steps}")
    }
}

impl std::error::Error for StepsProblem {}

impl Sampler {
    /// Whether the sampler's steps fit a schedule of `schedule_steps` steps (respacing
    /// picks a subset of them, never more).
    /// A σ sampler maps each σ to a timestep, so any step count ≥ 1 fits.
    pub fn check_steps(&self, schedule_steps: usize) -> Result<(), StepsProblem> {
        if let Some(sigma) = self.sigma_steps() {
            if sigma.steps == 0 {
                return Err(StepsProblem { steps: 0, schedule_steps });
            }
            return Ok(());
        }
        let steps = self.steps(schedule_steps);
        if steps == 0 || steps > schedule_steps {
            return Err(StepsProblem { steps, schedule_steps });
        }
        Ok(())
    }

    /// Network evaluations per sample on a schedule of `schedule_steps` steps: one per step
    /// (DPM-Solver's higher orders reuse the previous steps' predictions), except Heun's,
    /// which evaluates twice per step but the last (its step to σ = 0 is an Euler step).
    pub fn steps(&self, schedule_steps: usize) -> usize {
        match *self {
            Sampler::Ddpm { steps, .. } => steps.unwrap_or(schedule_steps),
            Sampler::Heun { steps, .. } => (2 * steps).saturating_sub(1),
            Sampler::Ddim { steps, .. }
            | Sampler::DpmSolver { steps, .. }
            | Sampler::Euler { steps, .. }
            | Sampler::EulerAncestral { steps, .. } => steps,
        }
    }

    /// The σ steps of a Karras sampler (None for the samplers on timesteps).
    pub fn sigma_steps(&self) -> Option<SigmaSteps> {
        match *self {
            Sampler::Euler { steps, rho, sigma_min, sigma_max }
            | Sampler::Heun { steps, rho, sigma_min, sigma_max }
            | Sampler::EulerAncestral { steps, rho, sigma_min, sigma_max } => {
                Some(SigmaSteps { steps, rho, sigma_min, sigma_max })
            }
            Sampler::Ddpm { .. } | Sampler::Ddim { .. } | Sampler::DpmSolver { .. } => None,
        }
    }

    /// Whether the sampler reads the variance the net learned (`learn_sigma`).
    pub fn needs_learned_variance(&self) -> bool {
        match self {
            Sampler::Ddpm { variance, .. } => *variance == VarianceType::Learned,
            _ => false,
        }
    }

    /// The reverse variance the chain uses (the others: β̃_t, which their step rules do not
    /// read beyond η).
    pub fn variance(&self) -> VarianceType {
        match self {
            Sampler::Ddpm { variance, .. } => *variance,
            _ => VarianceType::FixedSmall,
        }
    }

    /// The original timesteps this sampler visits (ascending). The steps must fit the
    /// schedule ([`Self::check_steps`]).
    pub fn timesteps(&self, schedule_steps: usize) -> Vec<usize> {
        match *self {
            Sampler::Ddpm { steps, .. } => {
                space_timesteps(schedule_steps, steps.unwrap_or(schedule_steps), Spacing::Uniform)
            }
            // Multistep solvers need even steps in λ near the end: trailing spacing stops at
            // t ≈ T/N and jumps to x₀ from there (as diffusers' default `linspace` spacing
            // does); ending on t = 0 makes the 2nd/3rd-order updates less accurate than DDIM
            // (measured on Gaussian data, see engine/tests/numbers.rs).
            Sampler::DpmSolver { steps, .. } => space_timesteps(schedule_steps, steps, Spacing::Trailing),
            Sampler::Ddim { steps, spacing, .. } => space_timesteps(schedule_steps, steps, spacing),
            // σ samplers run on the whole schedule: each σ is mapped to its nearest timestep.
            Sampler::Euler { .. } | Sampler::Heun { .. } | Sampler::EulerAncestral { .. } => {
                (0..schedule_steps).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_fit_the_schedule_or_name_both_counts() {
        let ddim = Sampler::Ddim { steps: 50, eta: 0.0, spacing: Spacing::Uniform };
        assert_eq!(ddim.check_steps(1000), Ok(()));
        let err = ddim.check_steps(40).unwrap_err();
        assert_eq!(err, StepsProblem { steps: 50, schedule_steps: 40 });
        assert!(err.to_string().contains("1..=40"), "{err}");
        let every = Sampler::Ddpm { variance: VarianceType::FixedSmall, steps: None };
        assert_eq!(every.steps(300), 300);
        assert_eq!(every.timesteps(4), [0, 1, 2, 3]);
    }

    #[test]
    fn only_learned_variance_needs_learn_sigma() {
        assert!(Sampler::Ddpm { variance: VarianceType::Learned, steps: None }.needs_learned_variance());
        assert!(!Sampler::Ddpm { variance: VarianceType::FixedLarge, steps: None }.needs_learned_variance());
        assert!(!Sampler::DpmSolver { steps: 10, order: 2 }.needs_learned_variance());
    }

    #[test]
    fn heun_counts_two_evaluations_per_step_but_the_last() {
        let heun = Sampler::Heun { steps: 18, rho: 7.0, sigma_min: None, sigma_max: None };
        assert_eq!(heun.steps(1000), 35);
        // σ steps map to timesteps, so more steps than the schedule has are fine.
        assert_eq!(heun.check_steps(10), Ok(()));
        let sigma = |sigma_min, sigma_max| SigmaSteps { steps: 4, rho: 7.0, sigma_min, sigma_max };
        assert_eq!(sigma(None, None).bounds(0.01, 50.0), Ok((0.01, 50.0)));
        assert_eq!(sigma(Some(0.5), Some(2.0)).bounds(0.01, 50.0), Ok((0.5, 2.0)));
        let empty = SigmaProblem::MinNotBelowMax { sigma_min: 60.0, sigma_max: 50.0 };
        assert_eq!(sigma(Some(60.0), None).bounds(0.01, 50.0), Err(empty));
        assert_eq!(sigma(None, None).bounds(0.01, f64::INFINITY), Err(SigmaProblem::InfiniteSigmaMax));
        assert_eq!(sigma(None, Some(3.0)).bounds(0.01, f64::INFINITY), Ok((0.01, 3.0)));
        let sigmas = karras_sigmas(3, 0.1, 10.0, 1.0);
        assert_eq!(sigmas.len(), 4);
        assert!((sigmas[1] - 5.05).abs() < 1e-12 && sigmas[3] == 0.0, "{sigmas:?}");
    }
}
