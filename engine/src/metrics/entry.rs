//! The feature statistics of one input (a dataset or sample set under one extractor): as
//! the hidden `stats` stage writes them, read back, or computed where a job has no entry.

use std::path::Path;

use anyhow::{Context, Result};
use difflow_core::job::{Job, StageRef};
use tch::{Kind, Tensor};

use crate::data::store::TensorFile;
use crate::data::Dataset;
use crate::metrics::features::{Extracted, Extractor, Extractors, FEATURES_FILE};
use crate::metrics::fid::{FeatureStats, STATS_FILE};
use crate::params::input;
use crate::progress::Progress;

/// Features of `images` with a progress bar.
pub fn extract_with_progress(extractor: &Extractor, images: &Tensor) -> Result<Extracted> {
    let n = images.size().first().copied().unwrap_or(0) as u64;
    let mut bar = Progress::begin("features", n);
    extractor.extract(images, |done| bar.update(done as u64, None))
}

/// Writes the statistics and the features into `dir`.
pub fn write_entry(dir: &Path, extracted: &Extracted) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stats = FeatureStats::of(&extracted.features)?;
    stats.write(&dir.join(STATS_FILE))?;
    let path = dir.join(FEATURES_FILE);
    let features = extracted.features.to_kind(Kind::Float).contiguous();
    let logits = extracted.logits.to_kind(Kind::Float).contiguous();
    Tensor::write_safetensors(&[("features", &features), ("logits", &logits)], &path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One input's statistics entry, read back.
pub struct StatsEntry {
    pub stats: FeatureStats,
    pub features: Tensor,
    pub logits: Tensor,
}

impl StatsEntry {
    pub fn read(dir: &Path) -> Result<StatsEntry> {
        let stats = FeatureStats::read(&dir.join(STATS_FILE))?;
        let file = TensorFile::read(&dir.join(FEATURES_FILE))?;
        Ok(StatsEntry { stats, features: file.take("features")?, logits: file.take("logits")? })
    }

    pub fn from_extracted(extracted: Extracted) -> Result<StatsEntry> {
        let stats = FeatureStats::of(&extracted.features)?;
        Ok(StatsEntry { stats, features: extracted.features, logits: extracted.logits })
    }
}

/// The statistics entry of one side (`key`: `samples` or `reference`): the hidden `stats`
/// stage's when the job has it, otherwise computed here from the input.
pub fn side(
    job: &Job,
    stats: Option<&StageRef>,
    of: Option<&StageRef>,
    key: &str,
    ex: &mut Extractors,
) -> Result<StatsEntry> {
    if let Some(stats) = stats {
        let (name, entry) = input(job, stats)?;
        return StatsEntry::read(&entry.dir).with_context(|| format!("cannot read the feature statistics `{name}`"));
    }
    let of = of.with_context(|| format!("`{}` needs `{key}` for these metrics", job.instance))?;
    let (name, of) = input(job, of)?;
    let data = Dataset::read(&of.dir).with_context(|| format!("cannot read `{name}`"))?;
    let extracted = extract_with_progress(ex.main()?, &data.values)?;
    StatsEntry::from_extracted(extracted)
}
