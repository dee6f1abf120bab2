//! The variational bound: Gaussian KL, the decoder likelihood, per-timestep terms in bits
//! and the full-bound bits/dim (Ho et al. 2020 §3.3; improved-diffusion's `losses.py` and
//! `_vb_terms_bpd` / `calc_bpd_loop`).

use std::f64::consts::LN_2;

use anyhow::Result;
use tch::{Kind, Tensor};

use super::noise::SampleNoise;
use super::Process;

/// Mean over every dimension but the first: [B, …] → [B].
pub fn mean_flat(x: &Tensor) -> Tensor {
    if x.dim() <= 1 {
        return x.shallow_clone();
    }
    let dims: Vec<i64> = (1..x.dim() as i64).collect();
    x.mean_dim(dims.as_slice(), false, x.kind())
}

/// KL(N(m1, e^{lv1}) ‖ N(m2, e^{lv2})) elementwise, in nats.
pub fn normal_kl(mean1: &Tensor, log_var1: &Tensor, mean2: &Tensor, log_var2: &Tensor) -> Tensor {
    ((log_var2 - log_var1) + (log_var1 - log_var2).exp() + (mean1 - mean2).square() * (-log_var2).exp() - 1.0) * 0.5
}

/// Φ(x) by the tanh approximation that Ho et al.'s code (and improved-diffusion) uses,
/// ½(1 + tanh z) with z = √(2/π)(x + 0.044715x³), evaluated as the identical σ(2z): in the
/// tails 1 + tanh z cancels to a relative error of ~10⁻⁶, σ(2z) keeps full precision.
pub fn approx_standard_normal_cdf(x: &Tensor) -> Tensor {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    ((x + x.pow_tensor_scalar(3) * 0.044715) * (2.0 * k)).sigmoid()
}

/// log p(x) under a Gaussian discretised to the 256 bins of 8-bit data scaled to [-1, 1],
/// with the outermost bins extended to ±∞ (Ho et al. 2020, eq. 13). Elementwise, nats.
pub fn discretized_gaussian_log_likelihood(x: &Tensor, means: &Tensor, log_scales: &Tensor) -> Tensor {
    let centered = x - means;
    let inv_stdv = (-log_scales).exp();
    let cdf_plus = approx_standard_normal_cdf(&(&inv_stdv * (&centered + 1.0 / 255.0)));
    let cdf_min = approx_standard_normal_cdf(&(&inv_stdv * (&centered - 1.0 / 255.0)));
    let log_cdf_plus = cdf_plus.clamp_min(1e-12).log();
    let log_one_minus_cdf_min = (-&cdf_min + 1.0).clamp_min(1e-12).log();
    let log_cdf_delta = (&cdf_plus - &cdf_min).clamp_min(1e-12).log();
    let inner = log_one_minus_cdf_min.where_self(&x.gt(0.999), &log_cdf_delta);
    log_cdf_plus.where_self(&x.lt(-0.999), &inner)
}

/// log N(x; mean, e^{2 log_scale}) elementwise, nats: the decoder for continuous (vector) data.
pub fn gaussian_log_likelihood(x: &Tensor, means: &Tensor, log_scales: &Tensor) -> Tensor {
    let z = (x - means) * (-log_scales).exp();
    -(z.square() * 0.5) - log_scales - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

impl Process {
    /// The bound's term at index t for each item, in bits per dimension: KL(q(x_{t−1}|x_t,x₀) ‖
    /// p_θ(x_{t−1}|x_t)) for t > 0, the decoder's −log p_θ(x₀|x₁) at t = 0 (discretised for
    /// images, a Gaussian density for vectors). `clip_x0` clips x̂₀ to the process's data range (evaluation; training does not clip).
    pub fn vb_term_bits(&self, output: &Tensor, x0: &Tensor, xt: &Tensor, t: &Tensor, clip_x0: bool) -> Result<Tensor> {
        let d = self.p_mean_variance_with(output, xt, t, if clip_x0 { self.space.clip } else { None })?;
        let (true_mean, _, true_log_var) = self.q_posterior(x0, xt, t);
        let kl = mean_flat(&normal_kl(&true_mean, &true_log_var, &d.mean, &d.log_variance)) / LN_2;
        let log_scales = &d.log_variance * 0.5;
        let decoder_ll = if self.space.discrete {
            discretized_gaussian_log_likelihood(x0, &d.mean, &log_scales)
        } else {
            gaussian_log_likelihood(x0, &d.mean, &log_scales)
        };
        let decoder_nll = -mean_flat(&decoder_ll) / LN_2;
        Ok(decoder_nll.where_self(&t.eq(0), &kl))
    }

    /// KL(q(x_T | x₀) ‖ N(0, I)) in bits per dimension, [B].
    pub fn prior_bits(&self, x0: &Tensor) -> Tensor {
        let mean = self.sqrt_alpha_bar_last(x0) * x0;
        let log_var = self.log_one_minus_alpha_bar_last(x0).expand_as(x0);
        let zeros = x0.zeros_like();
        mean_flat(&normal_kl(&mean, &log_var, &zeros, &zeros)) / LN_2
    }
}

/// The full variational bound in bits per dimension.
pub struct BitsPerDim {
    /// Σ_t L_t + L_prior, [B].
    pub total: Tensor,
    /// L_prior, [B].
    pub prior: Tensor,
    /// L_t for t = 0 … T−1 (L_0 is the decoder term), [B, T].
    pub terms: Tensor,
}

/// The network as the diffusion code calls it: (x_t, original timesteps [B], labels) → output.
pub type ModelFn<'a> = dyn Fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor + 'a;

/// Bits/dim of `x0` (in the model's data space: images in [-1, 1]) under the full bound
/// over all T terms plus the prior (improved-diffusion's `calc_bpd_loop`). The noise of item
/// `indices[i]` at each t comes from `noise`, so the result does not depend on batching.
/// `on_step` is called after each of the T network evaluations.
pub fn bits_per_dim(
    process: &Process,
    model: &ModelFn,
    x0: &Tensor,
    y: Option<&Tensor>,
    noise: &SampleNoise,
    indices: &[u64],
    on_step: &mut dyn FnMut(usize),
) -> Result<BitsPerDim> {
    let b = x0.size()[0];
    let item_shape = &x0.size()[1..];
    let steps = process.steps();
    let mut terms = Vec::with_capacity(steps);
    for (done, k) in (0..steps).rev().enumerate() {
        let t = Tensor::full([b], k as i64, (Kind::Int64, x0.device()));
        let z = noise.normal(indices, k as u64, item_shape, x0.device()).to_kind(x0.kind());
        let xt = process.q_sample(x0, &t, &z);
        let output = tch::no_grad(|| model(&xt, &process.model_timesteps(&t), y));
        terms.push(process.vb_term_bits(&output, x0, &xt, &t, true)?);
        on_step(done + 1);
    }
    terms.reverse();
    let terms = Tensor::stack(&terms, 1);
    let prior = process.prior_bits(x0);
    let total = terms.sum_dim_intlist([1i64].as_slice(), false, terms.kind()) + &prior;
    Ok(BitsPerDim { total, prior, terms })
}
