//! The typed values of each kind's variants and of each stage's parameters, one module per
//! kind, beside the schema entry that documents them (`schema/table.rs`; the samplers'
//! entries are in `sampler.rs` itself). The checker decodes the resolved values into
//! these types and the engine decodes its job's parameters into the same ones, so the facts
//! both sides need (a measure's minimum sample count, whether a sampler fits a schedule,
//! dataset shapes, the UNet's normalisation) are methods here, written once.
//!
//! The schema and these types cannot disagree: `tests` decodes every variant with the
//! schema's defaults (and every optional key set) and serialises it back, which must give
//! the same keys and values.

pub mod classifier;
pub mod dataset;
pub mod guidance;
pub mod measure;
pub mod metrics;
pub mod model;
pub mod nll;
pub mod plot;
pub mod pretrained;
pub mod sample;
pub mod sampler;
pub mod schedule;
pub mod stats;
pub mod train;

#[cfg(test)]
mod tests;

use serde::de::DeserializeOwned;

/// A value that does not decode into its kind's type: on the engine's side a stale or
/// hand-written job file, on the checker's a resolved value the schema let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What was decoded (`train \`ddpm\``, `the model config`).
    pub what: String,
    /// serde's words, naming the key (`missing field \`eta\``).
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {} (a stale or hand-written job file?)", self.what, self.message)
    }
}

impl std::error::Error for DecodeError {}

/// `value` (a config object with `kind` and `variant`, or a stage's parameters) as a `T`;
/// `what` names it in the error.
pub fn decode<T: DeserializeOwned>(value: &serde_json::Value, what: &str) -> Result<T, DecodeError> {
    T::deserialize(value).map_err(|e| DecodeError { what: what.to_string(), message: e.to_string() })
}
