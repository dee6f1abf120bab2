//! The `schedule` kind: [`ScheduleSpec`] (its variants), decoded and judged by
//! [`ScheduleSpec::validate`] on both sides. The schedule arithmetic itself lives in
//! `diffusion::schedule`, beside the tables it fills.

pub use crate::diffusion::schedule::{ScheduleProblem, ScheduleSpec, Spacing};
