//! The hidden `stats` stage's parameters: the feature statistics of one input, which
//! difflow adds for each side a `metrics` stage compares.

use serde::{Deserialize, Serialize};

use super::metrics::FeatureKeys;
use crate::job::StageRef;

/// The parameters of a `stats` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsParams {
    pub of: StageRef,
    #[serde(flatten)]
    pub features: FeatureKeys,
}
