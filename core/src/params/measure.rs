//! The measures of a `metrics` stage (`measure = ["fid", …]`): each one's name, whether it
//! compares with a reference, and how many items it needs. A new measure is one line of
//! `measures!` below; every `match` on [`Measure`] (here, in the checker and in the engine)
//! then fails to compile until it handles it.

use serde::{Deserialize, Serialize};

/// Nearest neighbours whose distance sets each point's radius in precision and recall
/// (Kynkäänniemi et al. 2019 use k = 3).
pub const PRECISION_RECALL_K: usize = 3;

/// Splits the Inception Score averages over (Salimans et al. 2016).
pub const INCEPTION_SCORE_SPLITS: usize = 10;

/// Declares [`Measure`] with its name in the language per variant, and [`Measure::ALL`].
macro_rules! measures {
    ($( #[doc = $doc:literal] $variant:ident = $name:literal, )*) => {
        /// One measure a `metrics` stage can compute.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Measure {
            $( #[doc = $doc] #[serde(rename = $name)] $variant, )*
        }

        impl Measure {
            /// Every measure, in the order the reference lists them.
            pub const ALL: &'static [Measure] = &[$(Measure::$variant),*];

            /// How the measure is written in a pipeline (`"fid"`).
            pub fn name(self) -> &'static str {
                match self {
                    $( Measure::$variant => $name, )*
                }
            }
        }
    };
}

measures! {
    /// Fréchet Inception Distance (Heusel et al. 2017)
    Fid = "fid",
    /// Inception Score (Salimans et al. 2016)
    Is = "is",
    /// Kernel Inception Distance (Bińkowski et al. 2018)
    Kid = "kid",
    /// improved precision (Kynkäänniemi et al. 2019)
    Precision = "precision",
    /// improved recall (Kynkäänniemi et al. 2019)
    Recall = "recall",
    /// a classifier's accuracy on the samples' labels
    Accuracy = "accuracy",
}

impl Measure {
    /// The measure written `name`, if any.
    pub fn from_name(name: &str) -> Option<Measure> {
        Measure::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Whether the measure compares the samples' feature statistics with a reference's, and
    /// so needs a `reference` and a hidden `stats` entry for each side.
    pub fn needs_reference(self) -> bool {
        match self {
            Measure::Fid | Measure::Kid | Measure::Precision | Measure::Recall => true,
            Measure::Is | Measure::Accuracy => false,
        }
    }

    /// The fewest items the measure is computed from, on each side it reads (the samples
    /// and, for the measures that compare, the reference): a covariance needs 2, a k-NN
    /// radius k + 1 (the point itself excluded), the Inception Score one item per split.
    pub fn min_items(self) -> usize {
        match self {
            Measure::Fid | Measure::Kid => 2,
            Measure::Precision | Measure::Recall => PRECISION_RECALL_K + 1,
            Measure::Is => INCEPTION_SCORE_SPLITS,
            Measure::Accuracy => 1,
        }
    }

    /// Whether the measure reads Inception (or classifier) features of the samples, and so
    /// needs images when the features are Inception's.
    pub fn reads_features(self) -> bool {
        match self {
            Measure::Fid | Measure::Is | Measure::Kid | Measure::Precision | Measure::Recall => true,
            Measure::Accuracy => false,
        }
    }

    /// How the measure is named on a chart's axis.
    pub fn title(self) -> &'static str {
        match self {
            Measure::Fid => "FID",
            Measure::Is => "Inception Score",
            Measure::Kid => "KID",
            Measure::Precision => "precision",
            Measure::Recall => "recall",
            Measure::Accuracy => "accuracy",
        }
    }

    /// Which way the measure improves.
    pub fn better(self) -> Better {
        match self {
            Measure::Fid | Measure::Kid => Better::Lower,
            Measure::Is | Measure::Precision | Measure::Recall | Measure::Accuracy => Better::Higher,
        }
    }

    /// The measure as a reader names it.
    pub fn reading(self) -> Reading {
        Reading { name: self.name(), title: self.title(), better: self.better(), on_features: self.needs_reference() }
    }

    /// Of `measures`, the one that needs the most items, with that count (the first such
    /// on a tie).
    pub fn most_items(measures: impl IntoIterator<Item = Measure>) -> Option<(Measure, usize)> {
        measures.into_iter().map(|m| (m, m.min_items())).fold(None, |best, (m, n)| match best {
            Some((_, most)) if most >= n => best,
            _ => Some((m, n)),
        })
    }
}

/// Which way a number improves, for the axis titles of the charts that show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// A number a metrics or nll stage writes, as a reader names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The name in `metrics.json`.
    pub name: &'static str,
    pub title: &'static str,
    pub better: Better,
    /// Computed on the features of the `features` extractor (Inception or a classifier).
    pub on_features: bool,
}

/// What the nll stage writes.
pub const BITS_PER_DIM: Reading = Reading { name: "bpd", title: "bits/dim", better: Better::Lower, on_features: false };

/// How a number in `metrics.json` reads (`kid_mean` is KID's), if it is a known measure's.
pub fn reading_of(metric: &str) -> Option<Reading> {
    let name = metric.strip_suffix("_mean").unwrap_or(metric);
    Measure::from_name(name).map(Measure::reading).or((name == BITS_PER_DIM.name).then_some(BITS_PER_DIM))
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_through_serde_and_from_name() {
        for &m in Measure::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(m.name()));
            assert_eq!(serde_json::from_value::<Measure>(serde_json::json!(m.name())).unwrap(), m);
            assert_eq!(Measure::from_name(m.name()), Some(m));
        }
        assert_eq!(Measure::from_name("fidd"), None);
    }

    #[test]
    fn the_measure_that_needs_the_most_items_is_named() {
        use Measure::*;
        assert_eq!(Measure::most_items([Fid, Precision, Recall]), Some((Precision, 4)));
        assert_eq!(Measure::most_items([Fid, Is]), Some((Is, 10)));
        assert_eq!(Measure::most_items([Accuracy]), Some((Accuracy, 1)));
        assert_eq!(Measure::most_items([]), None);
    }
}
