//! The `nll` stage's parameters.

use serde::{Deserialize, Serialize};

use crate::job::StageRef;

/// The parameters of an `nll` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NllParams {
    pub from: StageRef,
    /// The training step whose EMA weights are evaluated (unset: the final ones); the job's
    /// `from` input is already that snapshot.
    pub step: Option<usize>,
    pub data: StageRef,
    /// Examples to evaluate (the first ones).
    pub count: usize,
    pub batch: usize,
}
