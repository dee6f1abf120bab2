//! All diffusion math on tensors, in one place (improved-diffusion's `gaussian_diffusion.py`
//! is the model). Per-timestep coefficients come from the float64 tables of
//! `difflow_core::diffusion::schedule`; they are gathered in float64 and cast to the dtype of the
//! tensor they multiply, so a float64 caller gets float64 arithmetic throughout.
//!
//! Index convention: `t` is a 0-based index into the process's tables (t = 0 is the
//! papers' t = 1). A respaced process keeps `timestep_map[k]`, the original timestep the
//! network is called with at index k.

pub mod edm;
pub mod guidance;
pub mod loss;
pub mod noise;
pub mod sampler;
pub mod vlb;

use anyhow::{bail, Result};
use difflow_core::diffusion::schedule::DiffusionTables;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::models::{ModelSpec, Prediction};

pub use difflow_core::params::sampler::VarianceType;

/// Where the data lives, for clipping x̂₀ and for the decoder term of the bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DataSpace {
    /// Clip x̂₀ to [−c, c] while sampling: 1 for images; for vectors the largest |value| in the
    /// training data (an x̂₀ outside the data's range is an error of ε̂ amplified by
    /// 1/√ᾱ_t, which at the last steps of a cosine schedule is ~10⁴).
    pub clip: Option<f64>,
    /// 8-bit images: the decoder is the discretised Gaussian; otherwise a Gaussian density.
    pub discrete: bool,
}

impl DataSpace {
    pub fn images() -> DataSpace {
        DataSpace { clip: Some(1.0), discrete: true }
    }

    pub fn points(bound: Option<f64>) -> DataSpace {
        DataSpace { clip: bound, discrete: false }
    }
}

/// The float64 tables as tensors on one device.
struct Coefficients {
    log_betas: Tensor,
    alphas_cumprod: Tensor,
    alphas_cumprod_prev: Tensor,
    sqrt_alphas_cumprod: Tensor,
    sqrt_one_minus_alphas_cumprod: Tensor,
    log_one_minus_alphas_cumprod: Tensor,
    sqrt_recip_alphas_cumprod: Tensor,
    sqrt_recipm1_alphas_cumprod: Tensor,
    posterior_variance: Tensor,
    posterior_log_variance_clipped: Tensor,
    posterior_mean_coef1: Tensor,
    posterior_mean_coef2: Tensor,
    large_variance: Tensor,
    large_log_variance: Tensor,
}

fn table(values: &[f64], device: Device) -> Tensor {
    Tensor::from_slice(values).to_device(device)
}

impl Coefficients {
    fn new(t: &DiffusionTables, device: Device) -> Coefficients {
        let mut large: Vec<f64> = t.betas.clone();
        if t.betas.len() > 1 {
            large[0] = t.posterior_variance[1];
        }
        let large_log: Vec<f64> = large.iter().map(|v| v.ln()).collect();
        let log_betas: Vec<f64> = t.betas.iter().map(|b| b.ln()).collect();
        Coefficients {
            log_betas: table(&log_betas, device),
            alphas_cumprod: table(&t.alphas_cumprod, device),
            alphas_cumprod_prev: table(&t.alphas_cumprod_prev, device),
            sqrt_alphas_cumprod: table(&t.sqrt_alphas_cumprod, device),
            sqrt_one_minus_alphas_cumprod: table(&t.sqrt_one_minus_alphas_cumprod, device),
            log_one_minus_alphas_cumprod: table(&t.log_one_minus_alphas_cumprod, device),
            sqrt_recip_alphas_cumprod: table(&t.sqrt_recip_alphas_cumprod, device),
            sqrt_recipm1_alphas_cumprod: table(&t.sqrt_recipm1_alphas_cumprod, device),
            posterior_variance: table(&t.posterior_variance, device),
            posterior_log_variance_clipped: table(&t.posterior_log_variance_clipped, device),
            posterior_mean_coef1: table(&t.posterior_mean_coef1, device),
            posterior_mean_coef2: table(&t.posterior_mean_coef2, device),
            large_variance: table(&large, device),
            large_log_variance: table(&large_log, device),
        }
    }
}

/// What one evaluation of the network says about x_{t-1}.
pub struct Denoised {
    /// ε̂ consistent with `x0` (recomputed after clipping or guidance).
    pub eps: Tensor,
    /// x̂₀ (clipped to the data's range when the process clips).
    pub x0: Tensor,
    /// μ_θ(x_t, t): the posterior mean at x̂₀.
    pub mean: Tensor,
    pub variance: Tensor,
    pub log_variance: Tensor,
}

/// A Gaussian diffusion process (possibly respaced) with a model parameterisation.
pub struct Process {
    pub tables: DiffusionTables,
    /// Original timestep of each index (identity unless respaced).
    pub timestep_map: Vec<i64>,
    pub model: ModelSpec,
    pub variance: VarianceType,
    pub space: DataSpace,
    coef: Coefficients,
    timestep_map_tensor: Tensor,
}

impl Process {
    pub fn new(
        tables: DiffusionTables,
        model: ModelSpec,
        variance: VarianceType,
        space: DataSpace,
        device: Device,
    ) -> Self {
        let map: Vec<i64> = (0..tables.steps() as i64).collect();
        Process::with_map(tables, map, model, variance, space, device)
    }

    /// The process restricted to `use_timesteps` (ascending, 0-based) of `tables` (IDDPM respacing).
    pub fn respaced(
        tables: &DiffusionTables,
        use_timesteps: &[usize],
        model: ModelSpec,
        variance: VarianceType,
        space: DataSpace,
        device: Device,
    ) -> Self {
        let map = use_timesteps.iter().map(|&t| t as i64).collect();
        Process::with_map(tables.respaced(use_timesteps), map, model, variance, space, device)
    }

    fn with_map(
        tables: DiffusionTables,
        map: Vec<i64>,
        model: ModelSpec,
        variance: VarianceType,
        space: DataSpace,
        device: Device,
    ) -> Self {
        let coef = Coefficients::new(&tables, device);
        let timestep_map_tensor = Tensor::from_slice(&map).to_device(device);
        Process { tables, timestep_map: map, model, variance, space, coef, timestep_map_tensor }
    }

    pub fn steps(&self) -> usize {
        self.tables.steps()
    }

    /// The original timesteps (what the network sees) of process indices `t`.
    pub fn model_timesteps(&self, t: &Tensor) -> Tensor {
        self.timestep_map_tensor.to_device(t.device()).index_select(0, &t.to_kind(Kind::Int64))
    }

    /// table[t] shaped [B, 1, …] like `like`, in `like`'s dtype.
    fn at(&self, table: &Tensor, t: &Tensor, like: &Tensor) -> Tensor {
        let v = table.to_device(t.device()).index_select(0, &t.to_kind(Kind::Int64));
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, like.dim().saturating_sub(1)));
        v.to_kind(like.kind()).view(shape.as_slice())
    }

    /// x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε.
    pub fn q_sample(&self, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Tensor {
        self.at(&self.coef.sqrt_alphas_cumprod, t, x0) * x0
            + self.at(&self.coef.sqrt_one_minus_alphas_cumprod, t, x0) * noise
    }

    /// Mean and log-variance of q(x_t | x₀).
    pub fn q_mean_log_variance(&self, x0: &Tensor, t: &Tensor) -> (Tensor, Tensor) {
        let mean = self.at(&self.coef.sqrt_alphas_cumprod, t, x0) * x0;
        let log_var = self.at(&self.coef.log_one_minus_alphas_cumprod, t, x0).expand_as(x0);
        (mean, log_var)
    }

    /// q(x_{t−1} | x_t, x₀): (mean, variance, clipped log-variance).
    pub fn q_posterior(&self, x0: &Tensor, xt: &Tensor, t: &Tensor) -> (Tensor, Tensor, Tensor) {
        let mean =
            self.at(&self.coef.posterior_mean_coef1, t, xt) * x0 + self.at(&self.coef.posterior_mean_coef2, t, xt) * xt;
        let var = self.at(&self.coef.posterior_variance, t, xt).expand_as(xt);
        let log_var = self.at(&self.coef.posterior_log_variance_clipped, t, xt).expand_as(xt);
        (mean, var, log_var)
    }

    /// The regression target of the simple loss for the model's prediction type.
    pub fn target(&self, x0: &Tensor, t: &Tensor, noise: &Tensor) -> Tensor {
        match self.model.prediction {
            Prediction::Eps => noise.shallow_clone(),
            Prediction::X0 => x0.shallow_clone(),
            // v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho 2022).
            Prediction::V => {
                self.at(&self.coef.sqrt_alphas_cumprod, t, x0) * noise
                    - self.at(&self.coef.sqrt_one_minus_alphas_cumprod, t, x0) * x0
            }
        }
    }

    /// x₀ = (x_t − √(1−ᾱ) ε) / √ᾱ.
    pub fn x0_from_eps(&self, xt: &Tensor, t: &Tensor, eps: &Tensor) -> Tensor {
        self.at(&self.coef.sqrt_recip_alphas_cumprod, t, xt) * xt
            - self.at(&self.coef.sqrt_recipm1_alphas_cumprod, t, xt) * eps
    }

    /// ε = (x_t − √ᾱ x₀) / √(1−ᾱ).
    pub fn eps_from_x0(&self, xt: &Tensor, t: &Tensor, x0: &Tensor) -> Tensor {
        (xt - self.at(&self.coef.sqrt_alphas_cumprod, t, xt) * x0)
            / self.at(&self.coef.sqrt_one_minus_alphas_cumprod, t, xt)
    }

    /// Splits a network output into its prediction channels and, with `learn_sigma`, the
    /// variance channels (dim 1 holds 2·C).
    pub fn split_output(&self, output: &Tensor) -> (Tensor, Option<Tensor>) {
        if self.model.learn_sigma {
            let c = output.size()[1] / 2;
            (output.narrow(1, 0, c), Some(output.narrow(1, c, c)))
        } else {
            (output.shallow_clone(), None)
        }
    }

    /// x̂₀ (unclipped) from the prediction channels.
    pub fn x0_from_prediction(&self, prediction: &Tensor, xt: &Tensor, t: &Tensor) -> Tensor {
        match self.model.prediction {
            Prediction::Eps => self.x0_from_eps(xt, t, prediction),
            Prediction::X0 => prediction.shallow_clone(),
            // x₀ = √ᾱ x_t − √(1−ᾱ) v.
            Prediction::V => {
                self.at(&self.coef.sqrt_alphas_cumprod, t, xt) * xt
                    - self.at(&self.coef.sqrt_one_minus_alphas_cumprod, t, xt) * prediction
            }
        }
    }

    /// ε̂ from the prediction channels (exact, before any clipping).
    pub fn eps_from_prediction(&self, prediction: &Tensor, xt: &Tensor, t: &Tensor) -> Tensor {
        match self.model.prediction {
            Prediction::Eps => prediction.shallow_clone(),
            Prediction::X0 => self.eps_from_x0(xt, t, prediction),
            // ε = √ᾱ v + √(1−ᾱ) x_t.
            Prediction::V => {
                self.at(&self.coef.sqrt_alphas_cumprod, t, xt) * prediction
                    + self.at(&self.coef.sqrt_one_minus_alphas_cumprod, t, xt) * xt
            }
        }
    }

    /// Σ_θ as (variance, log-variance) for this process's variance type; `v` is the
    /// network's variance output (required for `Learned`).
    pub fn model_variance(&self, v: Option<&Tensor>, t: &Tensor, like: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok(match self.variance {
            VarianceType::FixedSmall => (
                self.at(&self.coef.posterior_variance, t, like).expand_as(like),
                self.at(&self.coef.posterior_log_variance_clipped, t, like).expand_as(like),
            ),
            VarianceType::FixedLarge => (
                self.at(&self.coef.large_variance, t, like).expand_as(like),
                self.at(&self.coef.large_log_variance, t, like).expand_as(like),
            ),
            VarianceType::Learned => {
                let Some(v) = v else {
                    bail!("learned variance needs a model trained with `learn_sigma = true`");
                };
                let min_log = self.at(&self.coef.posterior_log_variance_clipped, t, like);
                let max_log = self.at(&self.coef.log_betas, t, like);
                let frac = (v.to_kind(like.kind()) + 1.0) / 2.0;
                let log_var = &frac * max_log + (-&frac + 1.0) * min_log;
                (log_var.exp(), log_var)
            }
        })
    }

    /// p(x_{t−1} | x_t) from a network output: x̂₀ (clipped to the data's range), ε̂, the mean and Σ.
    pub fn p_mean_variance(&self, output: &Tensor, xt: &Tensor, t: &Tensor) -> Result<Denoised> {
        self.p_mean_variance_with(output, xt, t, self.space.clip)
    }

    /// [`Process::p_mean_variance`] with clipping of x̂₀ chosen by the caller (training never clips).
    pub fn p_mean_variance_with(
        &self,
        output: &Tensor,
        xt: &Tensor,
        t: &Tensor,
        clip: Option<f64>,
    ) -> Result<Denoised> {
        let (prediction, v) = self.split_output(output);
        let prediction = prediction.to_kind(xt.kind());
        let (variance, log_variance) = self.model_variance(v.as_ref(), t, xt)?;
        let raw_x0 = self.x0_from_prediction(&prediction, xt, t);
        let (x0, eps) = if let Some(c) = clip {
            let x0 = raw_x0.clamp(-c, c);
            let eps = self.eps_from_x0(xt, t, &x0);
            (x0, eps)
        } else {
            let eps = self.eps_from_prediction(&prediction, xt, t);
            (raw_x0, eps)
        };
        let (mean, _, _) = self.q_posterior(&x0, xt, t);
        Ok(Denoised { eps, x0, mean, variance, log_variance })
    }

    /// Replaces ε̂ (after guidance) and recomputes x̂₀ and the mean from it, unclipped
    /// (guided-diffusion's `condition_score`).
    pub fn with_eps(&self, d: Denoised, eps: Tensor, xt: &Tensor, t: &Tensor) -> Denoised {
        let x0 = self.x0_from_eps(xt, t, &eps);
        let (mean, _, _) = self.q_posterior(&x0, xt, t);
        Denoised { eps, x0, mean, ..d }
    }

    /// ᾱ at the process indices `t`, shaped to broadcast against `like`.
    pub fn alpha_bar_at(&self, t: &Tensor, like: &Tensor) -> Tensor {
        self.at(&self.coef.alphas_cumprod, t, like)
    }

    /// ᾱ before the process indices `t` (1 at index 0), shaped to broadcast against `like`.
    pub fn alpha_bar_prev_at(&self, t: &Tensor, like: &Tensor) -> Tensor {
        self.at(&self.coef.alphas_cumprod_prev, t, like)
    }

    /// 1 where t > 0, 0 at the last step (which adds no noise), shaped like `like`'s batch.
    pub fn nonzero_mask(&self, t: &Tensor, like: &Tensor) -> Tensor {
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, like.dim().saturating_sub(1)));
        t.ne(0).to_kind(like.kind()).view(shape.as_slice())
    }

    /// ᾱ at index t (float64).
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.tables.alphas_cumprod[t]
    }

    /// σ = √((1 − ᾱ)/ᾱ) at the process index all of `t` hold (a sampler steps every item
    /// at the same index): the noise level a σ-based rule such as a guidance interval reads.
    pub fn sigma_at(&self, t: &Tensor) -> f64 {
        let alpha_bar = self.alpha_bar(t.int64_value(&[0]) as usize);
        ((1.0 - alpha_bar) / alpha_bar).sqrt()
    }

    /// ᾱ before index t (1 at index 0).
    pub fn alpha_bar_prev(&self, t: usize) -> f64 {
        self.tables.alphas_cumprod_prev[t]
    }

    /// √(1 − ᾱ_t) shaped like `like` (for classifier guidance on ε).
    pub fn sqrt_one_minus_alpha_bar(&self, t: &Tensor, like: &Tensor) -> Tensor {
        self.at(&self.coef.sqrt_one_minus_alphas_cumprod, t, like)
    }

    pub(crate) fn log_one_minus_alpha_bar_last(&self, like: &Tensor) -> Tensor {
        let t = Tensor::full([like.size()[0]], self.steps() as i64 - 1, (Kind::Int64, like.device()));
        self.at(&self.coef.log_one_minus_alphas_cumprod, &t, like)
    }

    pub(crate) fn sqrt_alpha_bar_last(&self, like: &Tensor) -> Tensor {
        let t = Tensor::full([like.size()[0]], self.steps() as i64 - 1, (Kind::Int64, like.device()));
        self.at(&self.coef.sqrt_alphas_cumprod, &t, like)
    }
}
