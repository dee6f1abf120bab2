//! The `guidance` kind: conditioning at sampling time.

use serde::{Deserialize, Serialize};

use crate::job::StageRef;

/// A `guidance` config object (`kind` ignored), decoded by its variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "variant", rename_all = "snake_case")]
pub enum GuidanceConfig {
    /// Classifier-free guidance with weight w.
    Cfg { scale: f64 },
    /// Classifier guidance with gradient scale s by a noisy classifier stage.
    Classifier { model: StageRef, scale: f64 },
}
