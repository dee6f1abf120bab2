//! The `classifier` stage's parameters.

use serde::{Deserialize, Serialize};

use crate::job::StageRef;

/// The parameters of a `classifier` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierParams {
    /// The `model` config object (an encoder), kept whole for `meta.json`.
    pub model: serde_json::Value,
    pub data: StageRef,
    /// Set: a noisy classifier of x_t; unset: a clean one.
    pub schedule: Option<serde_json::Value>,
    pub steps: Option<usize>,
    pub epochs: Option<usize>,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
}
