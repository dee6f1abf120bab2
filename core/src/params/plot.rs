//! The `plot` stage's parameters, by variant, and the rule both sides apply to the steps a
//! forward plot shows ([`ForwardParams::check_at`]).

use serde::{Deserialize, Serialize};

use super::metrics::FeatureKeys;
use crate::diffusion::schedule::ScheduleSpec;
use crate::job::StageRef;

/// The parameters of a `plot` stage, by variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum PlotParams {
    Grid(GridParams),
    Scatter(ScatterParams),
    Forward(ForwardParams),
    Trajectory(TrajectoryParams),
    Schedules(SchedulesParams),
    Loss(LossParams),
    Curve(CurveParams),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridParams {
    pub of: StageRef,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScatterParams {
    /// Stages holding 2-D points, one colour each.
    pub of: Vec<StageRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardParams {
    pub data: StageRef,
    pub schedule: ScheduleSpec,
    /// Steps t to show (0 … T−1).
    pub at: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryParams {
    /// A sample stage that kept its trajectory.
    pub samples: StageRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulesParams {
    /// The schedules to compare.
    pub of: Vec<ScheduleSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossParams {
    /// Training stages.
    pub of: Vec<StageRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveParams {
    /// A sample stage that kept its trajectory.
    pub of: StageRef,
    pub y: CurveMetric,
    pub reference: Option<StageRef>,
    #[serde(flatten)]
    pub features: FeatureKeys,
}

/// The metric a curve plot follows along the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveMetric {
    Fid,
    Is,
}

impl CurveMetric {
    /// Whether the metric compares with real data (and so needs a `reference`).
    pub fn needs_reference(self) -> bool {
        match self {
            CurveMetric::Fid => true,
            CurveMetric::Is => false,
        }
    }
}

/// Why a forward plot cannot show its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtProblem {
    /// `at = []`.
    Empty,
    /// A step outside 0 … steps − 1.
    Beyond { t: i64, steps: usize },
}

impl std::fmt::Display for AtProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            AtProblem::Empty => f.write_str("`at` lists no steps"),
            AtProblem::Beyond { t, steps } => {
                write!(f, "t = {t} is beyond the schedule's {steps} steps (0…{})", steps.saturating_sub(1))
            }
        }
    }
}

impl std::error::Error for AtProblem {}

impl ForwardParams {
    /// Whether every step of `at` is one of the schedule's.
    pub fn check_at(&self) -> Result<(), AtProblem> {
        let steps = self.schedule.steps();
        if self.at.is_empty() {
            return Err(AtProblem::Empty);
        }
        match self.at.iter().find(|&&t| t < 0 || t >= steps as i64) {
            Some(&t) => Err(AtProblem::Beyond { t, steps }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_steps_lie_in_the_schedule() {
        let schedule: ScheduleSpec =
            serde_json::from_value(serde_json::json!({"variant": "cosine", "steps": 100, "s": 0.008, "max_beta": 0.999, "zero_terminal_snr": false}))
                .unwrap();
        let plot = |at: Vec<i64>| ForwardParams { data: StageRef { name: "d".into() }, schedule: schedule.clone(), at };
        assert_eq!(plot(vec![0, 99]).check_at(), Ok(()));
        assert_eq!(plot(vec![0, 100]).check_at(), Err(AtProblem::Beyond { t: 100, steps: 100 }));
        assert_eq!(plot(vec![-1]).check_at(), Err(AtProblem::Beyond { t: -1, steps: 100 }));
        assert_eq!(plot(Vec::new()).check_at(), Err(AtProblem::Empty));
    }
}
