//! The `nll` stage: negative log-likelihood in bits/dim from the full variational bound
//! (all T terms, the prior term, and the discretised Gaussian decoder for images),
//! Ho et al. 2020 §3.3 / improved-diffusion's `calc_bpd_loop`, on the first `count` items
//! of `data` under the trained model `from` (EMA weights). The variance is the learned range
//! when the model has `learn_sigma`, else the fixed σ² = β_t with which Ho et al. report
//! likelihoods ("fixedlarge"): for Gaussian data and the exact ε̂ that bound is tight, while
//! β̃_t, the sampler's default, overstates the NLL by two bits/dim (engine/tests/metrics_nll.rs).
//! Writes `metrics.json` with `bpd` (mean), its standard error, the prior and decoder terms
//! and the mean of each of the T terms.

use anyhow::{bail, Context, Result};
use difflow_core::job::Job;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::artifacts::TrainMeta;
use crate::data::Dataset;
use crate::diffusion::noise::SampleNoise;
use crate::diffusion::vlb::bits_per_dim;
use crate::diffusion::{Process, VarianceType};
use crate::params::{input, job_params};
use crate::progress::{self, Progress};
use crate::stages::metrics::METRICS_FILE;

/// The noise of item i at step t depends only on (this seed, i, t): batching changes nothing.
const NOISE_SEED: u64 = 0x6e6c6c;

pub use difflow_core::params::nll::NllParams;

pub fn run(job: &Job) -> Result<()> {
    let params: NllParams = job_params(job)?;
    let device = crate::device::resolve(&job.device)?;
    let (from_name, from) = input(job, &params.from)?;
    let meta = TrainMeta::read_input(from).with_context(|| format!("`from = {from_name}` must be a train stage"))?;
    if meta.edm.is_some() {
        bail!("`{from_name}` trained an EDM net, which has no discrete schedule's bound to measure");
    }
    let (data_name, data_input) = input(job, &params.data)?;
    let data = Dataset::read(&data_input.dir).with_context(|| format!("cannot read `{data_name}`"))?;
    if data.meta.shape != meta.data.shape || data.meta.data_type != meta.data.data_type {
        bail!(
            "`{from_name}` was trained on items of shape {:?}, but `{data_name}` holds {:?}",
            meta.data.shape,
            data.meta.shape
        );
    }
    let count = params.count.min(data.meta.count);
    if count == 0 {
        bail!("`{data_name}` is empty: nothing to evaluate");
    }
    let batch = params.batch.max(1);
    let (_vars, model) = meta.load_model(&from.dir, true, device)?;
    let spec = meta.model_spec;
    let variance = if spec.learn_sigma { VarianceType::Learned } else { VarianceType::FixedLarge };
    let process = Process::new(meta.schedule.tables(), spec, variance, meta.data_space(), device);
    let steps = process.steps();
    let net = |x: &Tensor, t: &Tensor, y: Option<&Tensor>| model.forward(&x.to_kind(Kind::Float), t, y, false);
    let noise = SampleNoise { seed: NOISE_SEED };

    progress::log(format!(
        "bits/dim of {count} items of `{data_name}` over {steps} terms ({} variance)",
        if spec.learn_sigma { "learned" } else { "fixed" }
    ));
    let batches = count.div_ceil(batch);
    let mut bar = Progress::begin("likelihood", (batches * steps) as u64);
    let (mut totals, mut priors, mut terms) = (Vec::new(), Vec::new(), Vec::new());
    for (bi, start) in (0..count).step_by(batch).enumerate() {
        let end = (start + batch).min(count);
        let index = Tensor::arange_start(start as i64, end as i64, (Kind::Int64, Device::Cpu));
        let (x0, labels) = data.batch(&index, device);
        let y = (spec.classes > 0).then_some(labels);
        let indices: Vec<u64> = (start as u64..end as u64).collect();
        let done_before = (bi * steps) as u64;
        let bpd = bits_per_dim(&process, &net, &x0, y.as_ref(), &noise, &indices, &mut |k| {
            bar.update(done_before + k as u64, None)
        })?;
        totals.push(bpd.total.to_kind(Kind::Double).to_device(Device::Cpu));
        priors.push(bpd.prior.to_kind(Kind::Double).to_device(Device::Cpu));
        terms.push(bpd.terms.to_kind(Kind::Double).to_device(Device::Cpu));
    }
    let total = Tensor::cat(&totals, 0);
    if total.isfinite().logical_not().any().int64_value(&[]) != 0 {
        bail!("the bound is not finite for some items: the model outputs NaN or infinite values");
    }
    let terms = Tensor::cat(&terms, 0).mean_dim(0, false, Kind::Double);
    let term_means: Vec<f64> = Vec::try_from(&terms)?;
    let bpd = total.mean(Kind::Double).double_value(&[]);
    let std_err = if count > 1 { total.std(true).double_value(&[]) / (count as f64).sqrt() } else { 0.0 };
    let prior = Tensor::cat(&priors, 0).mean(Kind::Double).double_value(&[]);
    let out = json!({
        "bpd": bpd,
        "bpd_std_err": std_err,
        "prior_bpd": prior,
        "decoder_bpd": term_means[0],
        "terms_bpd": term_means,
        "count": count,
        "variance": if spec.learn_sigma { "learned" } else { "fixed_large" },
    });
    progress::metric("bpd", bpd);
    progress::metric("prior_bpd", prior);
    std::fs::create_dir_all(&job.out_dir).with_context(|| format!("cannot create {}", job.out_dir.display()))?;
    let path = job.out_dir.join(METRICS_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)
        .with_context(|| format!("cannot write {}", path.display()))
}
