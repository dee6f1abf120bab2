//! The `metrics` stage's parameters, and the feature-extractor keys it shares with the
//! hidden `stats` stage and the `curve` plot.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::measure::Measure;
use crate::job::StageRef;

/// The parameters of a `metrics` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsParams {
    pub samples: StageRef,
    /// The training step the samples were drawn at (unset: as they are); the job's
    /// `samples` input is already that snapshot's.
    pub step: Option<usize>,
    pub reference: Option<StageRef>,
    #[serde(flatten)]
    pub features: FeatureKeys,
    pub measure: Vec<Measure>,
    pub classifier: Option<StageRef>,
    /// The hidden `stats` entries of the two sides, added by the orchestrator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_stats: Option<StageRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_stats: Option<StageRef>,
}

/// The keys that choose a feature extractor, shared by `stats`, `metrics` and the `curve` plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureKeys {
    pub features: Features,
    pub inception_weights: Option<PathBuf>,
}

/// `features = "inception"` or a classifier stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Features {
    Stage(StageRef),
    Named(String),
}

/// A side a `metrics` stage reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Samples,
    /// Read only by the measures that compare ([`Measure::needs_reference`]).
    Reference,
}

impl MetricsParams {
    /// Of the measures that read `side`, the one that needs the most items, with that count
    /// ([`Measure::most_items`]); the checker and the engine both hold each side to it.
    pub fn most_items(&self, side: Side) -> Option<(Measure, usize)> {
        let reading = self.measure.iter().copied().filter(|m| side == Side::Samples || m.needs_reference());
        Measure::most_items(reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_held_only_to_the_measures_that_compare() {
        let params = MetricsParams {
            samples: StageRef { name: "s".into() },
            step: None,
            reference: Some(StageRef { name: "r".into() }),
            features: FeatureKeys { features: Features::Named("inception".into()), inception_weights: None },
            measure: vec![Measure::Fid, Measure::Is],
            classifier: None,
            samples_stats: None,
            reference_stats: None,
        };
        assert_eq!(params.most_items(Side::Samples), Some((Measure::Is, 10)));
        assert_eq!(params.most_items(Side::Reference), Some((Measure::Fid, 2)));
    }
}
