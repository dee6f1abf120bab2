//! Karras et al. 2022's (EDM) preconditioning on tensors: the training batch on log-normal σ
//! and the denoiser D(x; σ) = c_skip x + c_out F(c_in x, c_noise) the σ samplers step with.
//! The constants are `difflow_core::params::train::Edm`'s. The network sees c_noise = ln(σ)/4
//! as a real-valued timestep (the sinusoidal embedding takes any real t).

use difflow_core::params::train::Edm;
use tch::{Kind, Tensor};

/// A training batch of an EDM-preconditioned net: its input c_in·(x₀ + σn), its timestep
/// c_noise(σ), and the target of its output F, (x₀ − c_skip·x)/c_out, whose unit-weighted MSE
/// is λ(σ)‖D(x; σ) − x₀‖² (EDM's loss, as k-diffusion's `Denoiser.loss` computes it).
pub struct EdmBatch {
    pub input: Tensor,
    pub c_noise: Tensor,
    pub target: Tensor,
}

/// ln σ ~ N(p_mean, p_std²) from standard normal draws `normal` [B].
pub fn training_sigmas(edm: &Edm, normal: &Tensor) -> Tensor {
    (normal * edm.p_std + edm.p_mean).exp()
}

/// The batch of clean items `x0` [B, …] at noise levels `sigma` [B] with noise `noise`.
pub fn training_batch(edm: &Edm, x0: &Tensor, sigma: &Tensor, noise: &Tensor) -> EdmBatch {
    let mut shape = vec![-1i64];
    shape.resize(x0.dim(), 1);
    let s = sigma.to_kind(x0.kind()).view(shape.as_slice());
    let sd2 = edm.sigma_data * edm.sigma_data;
    let variance = s.square() + sd2;
    let c_skip = variance.reciprocal() * sd2;
    let c_out = &s * edm.sigma_data / variance.sqrt();
    let c_in = variance.rsqrt();
    let x = x0 + &s * noise;
    let target = (x0 - &c_skip * &x) / c_out;
    EdmBatch { input: &x * c_in, c_noise: sigma.log().to_kind(Kind::Float) / 4.0, target }
}

/// The net's input at noise level σ: c_in(σ)·x.
pub fn net_input(edm: &Edm, x: &Tensor, sigma: f64) -> Tensor {
    x * edm.c_in(sigma)
}

/// D(x; σ) = c_skip(σ) x + c_out(σ) F from the net's output F on [`net_input`].
pub fn denoised(edm: &Edm, x: &Tensor, sigma: f64, output: &Tensor) -> Tensor {
    x * edm.c_skip(sigma) + output * edm.c_out(sigma)
}
