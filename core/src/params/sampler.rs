//! The `sampler` kind: the reverse chain's variants, how many steps each takes and which
//! timesteps it visits. The engine runs the step rules; the checker and the engine judge a
//! sampler against a schedule with the same methods.

use serde::{Deserialize, Serialize};

use crate::diffusion::schedule::{space_timesteps, Spacing};

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
    pub fn check_steps(&self, schedule_steps: usize) -> Result<(), StepsProblem> {
        let steps = self.steps(schedule_steps);
        if steps == 0 || steps > schedule_steps {
            return Err(StepsProblem { steps, schedule_steps });
        }
        Ok(())
    }

    /// Steps of the chain on a schedule of `schedule_steps` steps: network evaluations per
    /// sample (each sampler here evaluates the net once per step; DPM-Solver's higher
    /// orders reuse the previous steps' predictions).
    pub fn steps(&self, schedule_steps: usize) -> usize {
        match *self {
            Sampler::Ddpm { steps, .. } => steps.unwrap_or(schedule_steps),
            Sampler::Ddim { steps, .. } | Sampler::DpmSolver { steps, .. } => steps,
        }
    }

    /// Whether the sampler reads the variance the net learned (`learn_sigma`).
    pub fn needs_learned_variance(&self) -> bool {
        match self {
            Sampler::Ddpm { variance, .. } => *variance == VarianceType::Learned,
            Sampler::Ddim { .. } | Sampler::DpmSolver { .. } => false,
        }
    }

    /// The reverse variance the chain uses (DDIM and DPM-Solver: β̃_t, which their step
    /// rules do not read beyond η).
    pub fn variance(&self) -> VarianceType {
        match self {
            Sampler::Ddpm { variance, .. } => *variance,
            Sampler::Ddim { .. } | Sampler::DpmSolver { .. } => VarianceType::FixedSmall,
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
}
