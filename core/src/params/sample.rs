//! The `sample` stage's parameters, and the rule both sides apply to the labels it asks
//! for ([`Classes::check`]).

use serde::{Deserialize, Serialize};

use super::guidance::GuidanceConfig;
use super::sampler::Sampler;
use crate::job::StageRef;

/// The parameters of a `sample` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleParams {
    pub from: StageRef,
    /// The training step whose EMA weights sample (unset: the final ones); the job's
    /// `from` input is already that snapshot.
    pub step: Option<usize>,
    pub sampler: Sampler,
    pub guidance: Option<GuidanceConfig>,
    pub count: usize,
    pub classes: Classes,
    pub seed: u64,
    pub batch: usize,
    pub use_ema: bool,
    /// Keep x_t and x̂₀ every k-th step.
    pub trajectory: Option<usize>,
}

/// `classes = "all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllClasses {
    #[serde(rename = "all")]
    All,
}

/// The labels to condition on: `"all"` (cycled evenly), one label, or a list cycled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Classes {
    All(AllClasses),
    One(i64),
    List(Vec<i64>),
}

/// Why the labels asked for cannot be drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassesProblem {
    /// A label is asked for, but the model is unconditional and no classifier guides it.
    Unconditional { label: i64 },
    /// A label outside 0..classes.
    NoSuchClass { label: i64, classes: usize },
    /// `classes = []`.
    Empty,
}

impl std::fmt::Display for ClassesProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ClassesProblem::Unconditional { label } => write!(
                f,
                "`classes` asks for class {label}, but the model is unconditional (and no classifier guides it)"
            ),
            ClassesProblem::NoSuchClass { label, classes } => {
                write!(f, "class {label} does not exist: the model knows {classes} classes (0…{})", classes - 1)
            }
            ClassesProblem::Empty => f.write_str("`classes` is an empty list: it picks no label"),
        }
    }
}

impl std::error::Error for ClassesProblem {}

impl Classes {
    /// The labels picked by hand (none for `"all"`).
    pub fn picked(&self) -> &[i64] {
        match self {
            Classes::All(_) => &[],
            Classes::One(label) => std::slice::from_ref(label),
            Classes::List(labels) => labels,
        }
    }

    /// Whether the labels can be drawn from a model (or guiding classifier) of `classes`
    /// classes (0: unconditional).
    pub fn check(&self, classes: usize) -> Result<(), ClassesProblem> {
        if *self == Classes::List(Vec::new()) {
            return Err(ClassesProblem::Empty);
        }
        for &label in self.picked() {
            if classes == 0 {
                return Err(ClassesProblem::Unconditional { label });
            }
            if label < 0 || label >= classes as i64 {
                return Err(ClassesProblem::NoSuchClass { label, classes });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_the_classes_or_say_why_not() {
        assert_eq!(Classes::All(AllClasses::All).check(0), Ok(()));
        assert_eq!(Classes::List(vec![0, 9]).check(10), Ok(()));
        assert_eq!(Classes::One(3).check(0), Err(ClassesProblem::Unconditional { label: 3 }));
        assert_eq!(Classes::List(vec![1, 10]).check(10), Err(ClassesProblem::NoSuchClass { label: 10, classes: 10 }));
        assert_eq!(Classes::One(-1).check(10), Err(ClassesProblem::NoSuchClass { label: -1, classes: 10 }));
        assert_eq!(Classes::List(Vec::new()).check(10), Err(ClassesProblem::Empty));
    }

    #[test]
    fn classes_read_as_the_language_writes_them() {
        let read = |v| serde_json::from_value::<Classes>(v).unwrap();
        assert_eq!(read(serde_json::json!("all")), Classes::All(AllClasses::All));
        assert_eq!(read(serde_json::json!(2)), Classes::One(2));
        assert_eq!(read(serde_json::json!([1, 2])), Classes::List(vec![1, 2]));
        assert!(serde_json::from_value::<Classes>(serde_json::json!("some")).is_err());
    }
}
