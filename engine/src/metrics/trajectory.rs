//! Metrics along a sampling trajectory: FID and IS of the x̂₀ predictions a sample stage
//! kept (`trajectory = N`), for the metrics stage and the `curve` plot.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tch::Kind;

use crate::metrics::entry::{extract_with_progress, StatsEntry};
use crate::metrics::features::Extractors;
use crate::metrics::fid::frechet_distance;
use crate::metrics::inception_score::{inception_score, SPLITS};
use crate::params::decode;
use crate::progress;

/// The file a sample stage keeps its trajectory in.
pub const TRAJECTORY_FILE: &str = "trajectory.safetensors";

/// The steps between kept trajectory points of an upstream sample stage.
pub fn trajectory_every(sample_params: &Value, name: &str) -> Result<usize> {
    #[derive(Deserialize)]
    struct Kept {
        trajectory: Option<usize>,
    }
    Ok(decode::<Kept>(sample_params, name)?.trajectory.unwrap_or(0))
}

/// FID and IS of the x̂₀ predictions at each kept point of a sampling trajectory.
pub fn trajectory_metrics(
    path: &Path,
    every: usize,
    ex: &mut Extractors,
    reference: Option<&StatsEntry>,
    fid: bool,
    is: bool,
) -> Result<Vec<Value>> {
    let file = crate::data::store::TensorFile::read(path)?;
    let (t, x0) = (file.take("t")?, file.take("x0")?);
    if x0.kind() != Kind::Uint8 {
        // Trajectories of vector data have no image metrics.
        return Ok(Vec::new());
    }
    let ts: Vec<i64> = Vec::try_from(t.to_kind(Kind::Int64))?;
    progress::log(format!("metrics of x̂₀ at {} trajectory points", ts.len()));
    let mut points = Vec::with_capacity(ts.len());
    for (k, &t) in ts.iter().enumerate() {
        let images = x0.get(k as i64);
        let mut point = Map::new();
        point.insert("t".into(), json!(t));
        if every > 0 {
            point.insert("step".into(), json!(k * every));
        }
        let mut inception_logits = None;
        if fid {
            let reference = reference.context("trajectory FID needs the reference statistics")?;
            let extracted = extract_with_progress(ex.main()?, &images)?;
            let stats = crate::metrics::fid::FeatureStats::of(&extracted.features)?;
            point.insert("fid".into(), json!(frechet_distance(&stats, &reference.stats)?));
            if ex.features_are_inception() {
                inception_logits = Some(extracted.logits);
            }
        }
        if is {
            let logits = match inception_logits {
                Some(l) => l,
                None => {
                    let net = ex.inception()?;
                    net.extract(&images, 32, |_| {})?.logits
                }
            };
            let (mean, std) = inception_score(&logits, SPLITS)?;
            point.insert("is_mean".into(), json!(mean));
            point.insert("is_std".into(), json!(std));
        }
        points.push(Value::Object(point));
    }
    Ok(points)
}
