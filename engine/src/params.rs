//! Decoding a job's parameters (and the config objects inside them) into each stage's
//! typed structs. The front end has filled every default of the schema and checked every
//! type and range, so the engine holds no defaults of its own: a key that is missing or
//! of the wrong type here means a hand-written or stale job file, and the error says which.
//! `decode_any` names the struct of every kind and variant, for the test that decodes the
//! schema's defaults into all of them.

use anyhow::{anyhow, bail, Result};
use difflow_core::job::{Input, Job, StageRef};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `value` as a `T`; `what` names it in the error (`train \`ddpm\``, `the sampler of \`gen\``).
pub fn decode<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T> {
    Ok(difflow_core::params::decode(value, what)?)
}

/// The job's own parameters as a `T`.
pub fn job_params<T: DeserializeOwned>(job: &Job) -> Result<T> {
    decode(&job.params, &job.instance)
}

/// The job's parameters as a `T` decoded by the job's variant (`#[serde(tag = "variant")]`).
pub fn job_variant_params<T: DeserializeOwned>(job: &Job) -> Result<T> {
    decode(&with_variant(&job.params, &job.kind, &job.variant), &job.instance)
}

fn with_variant(params: &Value, kind: &str, variant: &str) -> Value {
    let mut object = params.clone();
    object["kind"] = kind.into();
    object["variant"] = variant.into();
    object
}

/// The upstream stage a reference names.
pub fn input<'a>(job: &'a Job, stage: &StageRef) -> Result<(&'a str, &'a Input)> {
    job.input(stage).ok_or_else(|| {
        anyhow!("the job lists no input for the stage `{}` (a stale or hand-written job file?)", stage.name)
    })
}

fn fits<T: DeserializeOwned>(value: &Value, what: &str) -> Result<()> {
    decode::<T>(value, what).map(|_| ())
}

/// Decodes `params` into the struct the engine uses for `kind`'s `variant` (configs and
/// stages alike); for the test that keeps the schema and the engine's types in step.
pub fn decode_any(kind: &str, variant: &str, params: &Value) -> Result<()> {
    use crate::stages::*;
    let what = format!("{kind} = {variant}");
    let object = with_variant(params, kind, variant);
    match kind {
        "schedule" => {
            difflow_core::diffusion::schedule::ScheduleSpec::from_config(&object).map_err(|e| anyhow!(e))?;
        }
        "model" => fits::<crate::models::ModelConfig>(&object, &what)?,
        "sampler" => fits::<crate::diffusion::sampler::Sampler>(&object, &what)?,
        "guidance" => fits::<crate::diffusion::guidance::GuidanceConfig>(&object, &what)?,
        "dataset" => fits::<dataset::DatasetParams>(&object, &what)?,
        "train" => fits::<train::TrainParams>(params, &what)?,
        "classifier" => fits::<classifier::ClassifierParams>(params, &what)?,
        "sample" => fits::<sample::SampleParams>(params, &what)?,
        "metrics" => fits::<metrics::MetricsParams>(params, &what)?,
        "stats" => fits::<stats::StatsParams>(params, &what)?,
        "nll" => fits::<nll::NllParams>(params, &what)?,
        "pretrained" => fits::<pretrained::PretrainedParams>(params, &what)?,
        "plot" => fits::<crate::plot::PlotParams>(&object, &what)?,
        // Written by the orchestrator in-process, never by a worker.
        "report" => {}
        // Run by difflow with the project's Python, never by a worker.
        "script" => {}
        other => bail!("no engine type for the kind `{other}`"),
    }
    Ok(())
}
