//! Whether a schedule can drive a diffusion process: the one judgement that `difflow check`
//! shows at the key to blame and the engine applies to every schedule it builds.

use std::fmt;

use super::{ScheduleSpec, MAX_STEPS};

/// Why a schedule cannot be used: the key to blame, what is wrong, a short label for the
/// key's value and what would fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleProblem {
    pub key: &'static str,
    pub message: String,
    pub label: String,
    pub help: String,
}

impl fmt::Display for ScheduleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.help)
    }
}

impl std::error::Error for ScheduleProblem {}

fn problem(key: &'static str, message: String, label: &str, help: String) -> Result<(), ScheduleProblem> {
    Err(ScheduleProblem { key, message, label: label.to_string(), help })
}

impl ScheduleSpec {
    /// Every β finite, in (0, 1) and large enough to add noise (β_T = 1 allowed with zero
    /// terminal SNR), so that every derived table is a number; the keys that contradict each
    /// other are named before the arithmetic is.
    pub fn validate(&self) -> Result<(), ScheduleProblem> {
        let steps = self.steps();
        if steps == 0 || steps > MAX_STEPS {
            return problem(
                "steps",
                format!("a schedule needs 1 ≤ steps ≤ {MAX_STEPS}, found {steps}"),
                "out of range",
                "published schedules use 1000 to 4000 steps".into(),
            );
        }
        if self.zero_terminal_snr() && steps < 2 {
            return problem(
                "zero_terminal_snr",
                format!("zero_terminal_snr needs at least 2 steps, and this schedule has {steps}"),
                "needs 2 steps or more",
                "the rescaling keeps ᾱ_1 and sends ᾱ_T to 0, which is impossible when step 1 is step T: \
                 use more steps or set `zero_terminal_snr = false`"
                    .into(),
            );
        }
        self.keys_agree()?;
        self.betas_fit()
    }

    fn keys_agree(&self) -> Result<(), ScheduleProblem> {
        match *self {
            ScheduleSpec::Linear { steps, start, end, scale_with_steps, .. } => {
                if start >= end {
                    return problem(
                        "end",
                        format!("a linear schedule needs start < end, found start = {start} and end = {end}"),
                        "not above start",
                        "β grows over the forward process: set `end` above `start` (Ho et al.: 1e-4 → 0.02)".into(),
                    );
                }
                let scale = if scale_with_steps { 1000.0 / steps as f64 } else { 1.0 };
                if scale * end >= 1.0 {
                    let min_steps = (1000.0 * end).floor() as i64 + 1;
                    let help = if scale_with_steps {
                        format!("use at least {min_steps} steps, or set `scale_with_steps = false` to keep β_T = {end}")
                    } else {
                        "set `end` below 1".to_string()
                    };
                    return problem(
                        "steps",
                        format!(
                            "with {steps} steps the linear schedule's last β is {end} × 1000/{steps} = {}, which is not below 1",
                            scale * end
                        ),
                        "too few steps for scale_with_steps",
                        help,
                    );
                }
                Ok(())
            }
            ScheduleSpec::Sigmoid { start, end, .. } if start >= end => problem(
                "end",
                format!("a sigmoid schedule needs start < end, found start = {start} and end = {end}"),
                "not above start",
                "Chen 2023 uses start = -3, end = 3".into(),
            ),
            _ => Ok(()),
        }
    }

    fn betas_fit(&self) -> Result<(), ScheduleProblem> {
        let betas = self.betas();
        let last = betas.len() - 1;
        for (i, &beta) in betas.iter().enumerate() {
            let why = if !beta.is_finite() {
                "not a number"
            } else if beta <= 0.0 || 1.0 - beta >= 1.0 {
                "so the step adds no noise"
            } else if beta > 1.0 || (beta == 1.0 && !(i == last && self.zero_terminal_snr())) {
                "so the step erases the signal before the last step"
            } else {
                continue;
            };
            let (key, help) = self.culprit();
            return problem(
                key,
                format!("the {} schedule's β at step {} is {beta}, {why}", self.variant_name(), i + 1),
                &format!("gives β = {beta}"),
                help.into(),
            );
        }
        Ok(())
    }

    /// The key most likely to blame for β out of (0, 1), and the usual values.
    fn culprit(&self) -> (&'static str, &'static str) {
        match self {
            ScheduleSpec::Linear { .. } => ("start", "β_1 must be above 0: Ho et al. use start = 1e-4"),
            ScheduleSpec::Cosine { .. } => (
                "s",
                "keep `s` small (Nichol & Dhariwal use 0.008): a large offset flattens ᾱ, so the steps add no noise",
            ),
            ScheduleSpec::Sigmoid { .. } => ("tau", "Chen 2023 uses start = -3, end = 3 and tau = 1"),
            ScheduleSpec::Betas { .. } => ("betas", "every β must lie in (0, 1)"),
        }
    }

    fn variant_name(&self) -> &'static str {
        match self {
            ScheduleSpec::Linear { .. } => "linear",
            ScheduleSpec::Cosine { .. } => "cosine",
            ScheduleSpec::Sigmoid { .. } => "sigmoid",
            ScheduleSpec::Betas { .. } => "given",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(steps: usize, zero_terminal_snr: bool) -> ScheduleSpec {
        ScheduleSpec::Linear { steps, start: 1e-4, end: 0.02, scale_with_steps: true, zero_terminal_snr }
    }

    fn cosine(steps: usize, s: f64, zero_terminal_snr: bool) -> ScheduleSpec {
        ScheduleSpec::Cosine { steps, s, max_beta: 0.999, zero_terminal_snr }
    }

    #[test]
    fn usual_schedules_are_valid_and_their_tables_finite() {
        for spec in [linear(1000, false), linear(1000, true), cosine(1000, 0.008, false), cosine(1000, 0.008, true)] {
            assert_eq!(spec.validate(), Ok(()), "{spec:?}");
        }
        let t = cosine(1, 0.008, false).tables();
        assert!(t.betas.iter().chain(&t.posterior_variance).all(|x| x.is_finite()));
    }

    #[test]
    fn zero_terminal_snr_with_one_step_is_refused_before_it_divides_by_zero() {
        for spec in [linear(1, true), cosine(1, 0.008, true)] {
            assert!(spec.betas().iter().any(|b| b.is_nan()), "the arithmetic this guards against");
            assert_eq!(spec.validate().unwrap_err().key, "zero_terminal_snr");
        }
    }

    #[test]
    fn a_huge_cosine_offset_is_blamed_on_s() {
        let e = cosine(1000, 1e300, false).validate().unwrap_err();
        assert_eq!(e.key, "s");
        assert!(e.message.contains("adds no noise"), "{}", e.message);
    }

    #[test]
    fn step_counts_outside_the_table_limit_are_refused() {
        assert_eq!(linear(0, false).validate().unwrap_err().key, "steps");
        assert_eq!(linear(MAX_STEPS + 1, false).validate().unwrap_err().key, "steps");
        assert_eq!(linear(MAX_STEPS, false).validate(), Ok(()));
    }

    #[test]
    fn given_betas_must_lie_in_the_open_interval() {
        assert_eq!(ScheduleSpec::Betas { betas: vec![0.1, 1.0, 0.2] }.validate().unwrap_err().key, "betas");
        assert_eq!(ScheduleSpec::Betas { betas: vec![0.1, f64::NAN] }.validate().unwrap_err().key, "betas");
        assert_eq!(ScheduleSpec::Betas { betas: vec![0.1, 0.2] }.validate(), Ok(()));
    }
}
