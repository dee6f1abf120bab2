//! Reverse processes: ancestral DDPM (respaced), DDIM with η, multistep DPM-Solver++ of
//! order 1–3, and Karras et al. 2022's Euler, Heun and ancestral Euler on σ steps; with CFG or classifier guidance, per-sample noise and an optional trajectory.
//! Each sampler's step rule lives here; its config, steps and timesteps are
//! `difflow_core::params::sampler`'s: a new sampler is its schema entry, a variant of
//! [`Sampler`] there, its arms below, and a reference test.

use anyhow::{bail, Result};
use difflow_core::diffusion::schedule::DiffusionTables;
use difflow_core::params::model::Prediction;
pub use difflow_core::params::sampler::Sampler;
use difflow_core::params::sampler::{karras_sigmas, schedule_sigmas, SigmaSteps};
use difflow_core::params::train::{Edm, EDM_SIGMA_MAX, EDM_SIGMA_MIN};
use tch::{Device, Kind, Tensor};

use super::edm;
use difflow_core::params::guidance::CfgInterval;

use super::guidance::{cfg_output, classifier_gradient, guided_eps, guided_mean};
use super::noise::{SampleNoise, STREAM_INIT};
use super::vlb::ModelFn;
use super::{DataSpace, Denoised, Process};
use crate::models::{Classifier, ModelSpec};

/// Conditioning at sampling time.
pub enum Guidance<'a> {
    None,
    /// Classifier-free guidance with weight w (needs labels and a model with a null class).
    Cfg {
        scale: f64,
        /// Where the guidance applies (unset: every step).
        interval: Option<CfgInterval>,
    },
    /// Classifier guidance with scale s by a noisy classifier.
    Classifier {
        classifier: &'a dyn Classifier,
        scale: f64,
    },
}

/// Everything a sampling run needs besides the network.
pub struct SampleSetup<'a> {
    pub tables: &'a DiffusionTables,
    pub model: ModelSpec,
    /// The net's EDM preconditioning (None: it predicts the schedule's ε, v or x₀).
    pub edm: Option<Edm>,
    pub space: DataSpace,
    pub sampler: &'a Sampler,
    pub guidance: &'a Guidance<'a>,
    /// Shape of one item ([C, H, W] or [D]).
    pub item_shape: &'a [i64],
    pub noise: SampleNoise,
    /// Keep x_t and x̂₀ at every k-th step (0: none).
    pub trajectory: usize,
    pub device: Device,
}

/// A batch of samples and, when asked for, its trajectory.
pub struct Samples {
    pub x0: Tensor,
    /// (original timestep, x_t, x̂₀) at every k-th step, in sampling order.
    pub trajectory: Vec<(i64, Tensor, Tensor)>,
}

impl SampleSetup<'_> {
    /// The process the sampler runs on (respaced to its timesteps).
    pub fn process(&self) -> Process {
        let ts = self.sampler.timesteps(self.tables.steps());
        Process::respaced(self.tables, &ts, self.model, self.sampler.variance(), self.space, self.device)
    }

    /// Draws the samples with global indices `indices` (their noise depends only on the
    /// stage seed and the index) and labels `y` (None for an unconditional model).
    /// `on_step` is called after each network evaluation.
    pub fn sample(
        &self,
        process: &Process,
        net: &ModelFn,
        indices: &[u64],
        y: Option<&Tensor>,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<Samples> {
        let x_init = self.noise.normal(indices, STREAM_INIT, self.item_shape, self.device);
        self.sample_from(process, net, x_init, indices, y, on_step)
    }

    /// [`SampleSetup::sample`] from a given x_T (the per-step noise still comes from the
    /// sample indices): for comparisons with other implementations that drew x_T themselves.
    pub fn sample_from(
        &self,
        process: &Process,
        net: &ModelFn,
        x_init: Tensor,
        indices: &[u64],
        y: Option<&Tensor>,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<Samples> {
        if matches!(self.guidance, Guidance::Cfg { .. } | Guidance::Classifier { .. }) && y.is_none() {
            bail!("guidance needs class labels to guide towards");
        }
        if let Some(sigma_steps) = self.sampler.sigma_steps() {
            return self.sample_sigmas(process, net, x_init, indices, y, sigma_steps, on_step);
        }
        if self.edm.is_some() {
            bail!("an EDM-preconditioned net is sampled on σ steps: use sampler = heun, euler or euler_ancestral");
        }
        let b = indices.len() as i64;
        let mut x = x_init;
        let mut trajectory = Vec::new();
        // DPM-Solver's previous data predictions with their λ, most recent first.
        let mut history: Vec<(Tensor, f64)> = Vec::new();
        let steps = process.steps();
        for (done, k) in (0..steps).rev().enumerate() {
            let t = Tensor::full([b], k as i64, (Kind::Int64, self.device));
            let d = self.denoise(process, net, &x, &t, y)?;
            if self.trajectory > 0 && done % self.trajectory == 0 {
                trajectory.push((process.timestep_map[k], x.shallow_clone(), d.x0.shallow_clone()));
            }
            x = match *self.sampler {
                Sampler::Ddpm { .. } => {
                    let z = self.noise.normal(indices, k as u64, self.item_shape, self.device);
                    ddpm_step(process, &d, &t, &z)
                }
                Sampler::Ddim { eta, .. } => {
                    let z = if eta > 0.0 {
                        self.noise.normal(indices, k as u64, self.item_shape, self.device)
                    } else {
                        x.zeros_like()
                    };
                    ddim_step(process, &d, &x, &t, eta, &z)
                }
                Sampler::DpmSolver { order, .. } => {
                    let (ab_s, ab_t) = (process.alpha_bar(k), process.alpha_bar_prev(k));
                    let next = dpm_solver_multistep_update(&x, &d.x0, &history, ab_s, ab_t, order);
                    history.insert(0, (d.x0.shallow_clone(), log_snr_half(ab_s)));
                    history.truncate(2);
                    next
                }
                Sampler::Euler { .. } | Sampler::Heun { .. } | Sampler::EulerAncestral { .. } => {
                    unreachable!("σ samplers run in sample_sigmas")
                }
            }
            .detach();
            on_step(done + 1);
        }
        Ok(Samples { x0: x, trajectory })
    }

    /// A σ sampler's chain (k-diffusion `sampling.py`): x = σ_max z, then its step rule on
    /// the Karras σ steps. `on_step` counts network evaluations (Heun: two per step).
    #[allow(clippy::too_many_arguments)]
    fn sample_sigmas(
        &self,
        process: &Process,
        net: &ModelFn,
        x_init: Tensor,
        indices: &[u64],
        y: Option<&Tensor>,
        sigma_steps: SigmaSteps,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<Samples> {
        let alpha_bar: Vec<f64> = (0..process.steps()).map(|k| process.alpha_bar(k)).collect();
        let table = schedule_sigmas(&alpha_bar);
        // An EDM net knows no schedule: EDM's own σ range, else the schedule's.
        let (lowest, highest) = match self.edm {
            Some(_) => (EDM_SIGMA_MIN, EDM_SIGMA_MAX),
            None => (table[0], table[table.len() - 1]),
        };
        let (sigma_min, sigma_max) = sigma_steps.bounds(lowest, highest)?;
        let sigmas = karras_sigmas(sigma_steps.steps, sigma_min, sigma_max, sigma_steps.rho);
        let mut trajectory = Vec::new();
        let mut evaluations = 0;
        let mut denoise = |x: &Tensor, sigma: f64| -> Result<Tensor> {
            let k = nearest_timestep(&table, sigma);
            let d = self.denoise_sigma(process, net, x, sigma, k, y)?;
            if self.trajectory > 0 && evaluations % self.trajectory == 0 {
                trajectory.push((process.timestep_map[k], x.shallow_clone(), d.shallow_clone()));
            }
            evaluations += 1;
            on_step(evaluations);
            Ok(d)
        };
        let x = x_init * sigmas[0];
        let x0 = match self.sampler {
            Sampler::Euler { .. } => sample_euler(x, &sigmas, &mut denoise)?,
            Sampler::Heun { .. } => sample_heun(x, &sigmas, &mut denoise)?,
            _ => sample_euler_ancestral(x, &sigmas, &mut denoise, &mut |i| {
                self.noise.normal(indices, i as u64, self.item_shape, self.device)
            })?,
        };
        Ok(Samples { x0, trajectory })
    }

    /// The guided denoiser D(x; σ) of a net trained on the discrete schedule, as k-diffusion's
    /// `DiscreteEpsDDPMDenoiser` / `DiscreteVDDPMDenoiser`: the net sees x √ᾱ (ᾱ = 1/(1+σ²))
    /// at timestep `k` (σ's nearest), and its prediction is turned into x̂₀ with the exact σ.
    /// An EDM net instead sees c_in(σ) x at the real timestep c_noise(σ), and D = c_skip x +
    /// c_out F. Classifier guidance adds σ² ∇_x log p(y | x) (Tweedie), the classifier seeing
    /// x √ᾱ at timestep `k`; x̂₀ is clipped like the other samplers' (k-diffusion leaves it
    /// unclipped).
    fn denoise_sigma(
        &self,
        process: &Process,
        net: &ModelFn,
        x: &Tensor,
        sigma: f64,
        k: usize,
        y: Option<&Tensor>,
    ) -> Result<Tensor> {
        let t = Tensor::full([x.size()[0]], k as i64, (Kind::Int64, self.device));
        let t_model = process.model_timesteps(&t);
        let alpha_bar = 1.0 / (1.0 + sigma * sigma);
        let x_in = x * alpha_bar.sqrt();
        let (net_x, net_t) = match &self.edm {
            Some(edm) => {
                let c_noise = Tensor::full([x.size()[0]], Edm::c_noise(sigma), (Kind::Float, self.device));
                (edm::net_input(edm, x, sigma), c_noise)
            }
            None => (x_in.shallow_clone(), t_model.shallow_clone()),
        };
        let output = tch::no_grad(|| match (self.guidance, y) {
            (Guidance::Cfg { scale, interval }, Some(y)) => {
                let scale = CfgInterval::scale_at(*interval, *scale, sigma);
                cfg_output(net, &net_x, &net_t, y, self.model.classes as i64, scale, self.item_shape[0])
            }
            _ => net(&net_x, &net_t, y),
        });
        let (prediction, _) = process.split_output(&output.to_kind(x.kind()));
        let mut d = match (&self.edm, self.model.prediction) {
            (Some(edm), _) => edm::denoised(edm, x, sigma, &prediction),
            (None, Prediction::Eps) => x - prediction * sigma,
            // x₀ = √ᾱ x_in − √(1−ᾱ) v, with √(1−ᾱ) = σ√ᾱ.
            (None, Prediction::V) => x * alpha_bar - prediction * (sigma * alpha_bar.sqrt()),
            (None, Prediction::X0) => prediction,
        };
        if let (Guidance::Classifier { classifier, scale }, Some(y)) = (self.guidance, y) {
            // ∇_x log p = √ᾱ ∇_{x_in} log p.
            let g = classifier_gradient(*classifier, &x_in, &t_model, y, *scale);
            d += g * (sigma * sigma * alpha_bar.sqrt());
        }
        Ok(match process.space.clip {
            Some(c) => d.clamp(-c, c),
            None => d,
        })
    }

    /// One guided network evaluation at process index t.
    fn denoise(
        &self,
        process: &Process,
        net: &ModelFn,
        x: &Tensor,
        t: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Denoised> {
        let t_model = process.model_timesteps(t);
        let output = tch::no_grad(|| match (self.guidance, y) {
            (Guidance::Cfg { scale, interval }, Some(y)) => {
                let scale = match interval {
                    Some(_) => CfgInterval::scale_at(*interval, *scale, process.sigma_at(t)),
                    None => *scale,
                };
                cfg_output(net, x, &t_model, y, self.model.classes as i64, scale, self.item_shape[0])
            }
            _ => net(x, &t_model, y),
        });
        let d = process.p_mean_variance(&output.to_kind(x.kind()), x, t)?;
        Ok(match (self.guidance, y) {
            (Guidance::Classifier { classifier, scale }, Some(y)) => {
                let g = classifier_gradient(*classifier, x, &t_model, y, *scale);
                match self.sampler {
                    Sampler::Ddpm { .. } => {
                        let mean = guided_mean(&d.mean, &d.variance, &g);
                        Denoised { mean, ..d }
                    }
                    _ => {
                        let eps = guided_eps(&d.eps, &process.sqrt_one_minus_alpha_bar(t, x), &g);
                        let guided = process.with_eps(d, eps, x, t);
                        // Guided-diffusion leaves this x̂₀ unclipped; near ᾱ = 0 the score shift
                        // is amplified by 1/√ᾱ, and an x̂₀ outside the data's range is never the
                        // better estimate, so it is clipped like the unguided one.
                        match process.space.clip {
                            Some(c) => {
                                let x0 = guided.x0.clamp(-c, c);
                                let eps = process.eps_from_x0(x, t, &x0);
                                process.with_eps(guided, eps, x, t)
                            }
                            None => guided,
                        }
                    }
                }
            }
            _ => d,
        })
    }
}

/// One ancestral step: x_{t−1} = μ + [t > 0] exp(½ log Σ) z.
pub fn ddpm_step(process: &Process, d: &Denoised, t: &Tensor, noise: &Tensor) -> Tensor {
    let nonzero = process.nonzero_mask(t, &d.mean);
    &d.mean + nonzero * (&d.log_variance * 0.5).exp() * noise
}

/// One DDIM step (Song et al. 2021, eq. 12) with η: x_{t−1} = √ᾱ' x̂₀ +
/// √(1 − ᾱ' − σ²) ε̂ + σ z, σ = η √((1−ᾱ')/(1−ᾱ)) √(1 − ᾱ/ᾱ'), ᾱ' = ᾱ_prev (1 at index 0).
pub fn ddim_step(process: &Process, d: &Denoised, xt: &Tensor, t: &Tensor, eta: f64, noise: &Tensor) -> Tensor {
    let ab = process.alpha_bar_at(t, xt);
    let ab_prev = process.alpha_bar_prev_at(t, xt);
    let sigma = ((-&ab_prev + 1.0) / (-&ab + 1.0)).sqrt() * (-(&ab / &ab_prev) + 1.0).sqrt() * eta;
    let dir = (-&ab_prev + 1.0 - sigma.square()).clamp_min(0.0).sqrt() * &d.eps;
    let mean = ab_prev.sqrt() * &d.x0 + dir;
    let nonzero = process.nonzero_mask(t, xt);
    mean + nonzero * sigma * noise
}

/// λ = log(α/σ) = ½ log(ᾱ / (1 − ᾱ)): −∞ at ᾱ = 0, +∞ at ᾱ = 1.
pub fn log_snr_half(alpha_bar: f64) -> f64 {
    0.5 * (alpha_bar.ln() - (1.0 - alpha_bar).ln())
}

/// One step of multistep DPM-Solver++ (Lu et al. 2022) of order 1, 2 or 3 from ᾱ_s to ᾱ_t with
/// the data prediction `x0` at s and `history`, the earlier steps' (x̂₀, λ), most recent first.
/// The order is lowered where the history is short and at the final step to x₀ (σ_t = 0,
/// h = ∞). Order 1 is DDIM; order 2 is Algorithm 2 (2M); order 3 is the 3M update of the
/// reference implementation (diffusers' `multistep_dpm_solver_third_order_update`).
pub fn dpm_solver_multistep_update(
    x: &Tensor,
    x0: &Tensor,
    history: &[(Tensor, f64)],
    alpha_bar_s: f64,
    alpha_bar_t: f64,
    order: usize,
) -> Tensor {
    let (alpha_s, sigma_s) = (alpha_bar_s.sqrt(), (1.0 - alpha_bar_s).sqrt());
    let (alpha_t, sigma_t) = (alpha_bar_t.sqrt(), (1.0 - alpha_bar_t).sqrt());
    let (lambda_s, lambda_t) = (log_snr_half(alpha_bar_s), log_snr_half(alpha_bar_t));
    let h = lambda_t - lambda_s;
    let usable = history.iter().take_while(|(_, l)| l.is_finite()).count();
    let order = if h.is_finite() && lambda_s.is_finite() { order.min(usable + 1) } else { 1 };
    // (σ_t/σ_s) x − α_t(e^{−h} − 1) D₀, written so it stays finite at α_s = 0 and σ_t = 0.
    let first = |d0: &Tensor| (x - d0 * alpha_s) * (sigma_t / sigma_s) + d0 * alpha_t;
    match order {
        1 => first(x0),
        2 => {
            let r = (lambda_s - history[0].1) / h;
            let d = x0 * (1.0 + 0.5 / r) - &history[0].0 * (0.5 / r);
            first(&d)
        }
        _ => {
            let (m1, l1) = (&history[0].0, history[0].1);
            let (m2, l2) = (&history[1].0, history[1].1);
            let (r0, r1) = ((lambda_s - l1) / h, (l1 - l2) / h);
            let d1_0 = (x0 - m1) / r0;
            let d1_1 = (m1 - m2) / r1;
            let d1 = &d1_0 + (&d1_0 - &d1_1) * (r0 / (r0 + r1));
            let d2 = (&d1_0 - &d1_1) / (r0 + r1);
            let phi = (-h).exp_m1();
            first(x0) + d1 * (alpha_t * (phi / h + 1.0)) - d2 * (alpha_t * ((phi + h) / (h * h) - 0.5))
        }
    }
}

/// One step of DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) from ᾱ_s to ᾱ_t given the
/// previous step's data prediction and step size h_prev in λ; returns (x_t, h).
pub fn dpm_solver_2m_update(
    x: &Tensor,
    x0: &Tensor,
    x0_prev: Option<&Tensor>,
    alpha_bar_s: f64,
    alpha_bar_t: f64,
    h_prev: Option<f64>,
) -> (Tensor, f64) {
    let lambda_s = log_snr_half(alpha_bar_s);
    let h = log_snr_half(alpha_bar_t) - lambda_s;
    let history = match (x0_prev, h_prev) {
        (Some(prev), Some(hp)) => vec![(prev.shallow_clone(), lambda_s - hp)],
        _ => Vec::new(),
    };
    (dpm_solver_multistep_update(x, x0, &history, alpha_bar_s, alpha_bar_t, 2), h)
}

/// The timestep whose σ is nearest to `sigma` in log σ (k-diffusion's `sigma_to_t` with
/// `quantize`): the net only ever sees the integer timesteps it was trained on.
pub fn nearest_timestep(table: &[f64], sigma: f64) -> usize {
    let distance = |s: f64| (s.ln() - sigma.ln()).abs();
    (0..table.len()).min_by(|&a, &b| distance(table[a]).total_cmp(&distance(table[b]))).unwrap_or(0)
}

/// D(x; σ), the denoised estimate, as the σ samplers call it.
pub type DenoiseFn<'a> = dyn FnMut(&Tensor, f64) -> Result<Tensor> + 'a;

/// k-diffusion's `to_d`: the probability-flow ODE's dx/dσ = (x − D(x; σ))/σ.
fn to_d(x: &Tensor, sigma: f64, denoised: &Tensor) -> Tensor {
    (x - denoised) / sigma
}

/// k-diffusion's `sample_euler` (no churn).
pub fn sample_euler(mut x: Tensor, sigmas: &[f64], denoise: &mut DenoiseFn) -> Result<Tensor> {
    for w in sigmas.windows(2) {
        let d = to_d(&x, w[0], &denoise(&x, w[0])?);
        x = (&x + d * (w[1] - w[0])).detach();
    }
    Ok(x)
}

/// k-diffusion's `sample_heun` (EDM Algorithm 1, no churn): Euler to σ_{i+1}, then the
/// trapezoidal correction, except for the last step to σ = 0.
pub fn sample_heun(mut x: Tensor, sigmas: &[f64], denoise: &mut DenoiseFn) -> Result<Tensor> {
    for w in sigmas.windows(2) {
        let (sigma, next) = (w[0], w[1]);
        let d = to_d(&x, sigma, &denoise(&x, sigma)?);
        let euler = &x + &d * (next - sigma);
        x = if next == 0.0 {
            euler
        } else {
            let d2 = to_d(&euler, next, &denoise(&euler, next)?);
            &x + (d + d2) * ((next - sigma) * 0.5)
        }
        .detach();
    }
    Ok(x)
}

/// k-diffusion's `get_ancestral_step` with η = 1: (σ_down, σ_up) with σ_down² + σ_up² = σ_to².
pub fn ancestral_step(sigma_from: f64, sigma_to: f64) -> (f64, f64) {
    let up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) / (sigma_from * sigma_from))
        .sqrt()
        .min(sigma_to);
    ((sigma_to * sigma_to - up * up).sqrt(), up)
}

/// k-diffusion's `sample_euler_ancestral` (η = 1); `noise(i)` is step i's standard normal.
pub fn sample_euler_ancestral(
    mut x: Tensor,
    sigmas: &[f64],
    denoise: &mut DenoiseFn,
    noise: &mut dyn FnMut(usize) -> Tensor,
) -> Result<Tensor> {
    for (i, w) in sigmas.windows(2).enumerate() {
        let (sigma, next) = (w[0], w[1]);
        let d = to_d(&x, sigma, &denoise(&x, sigma)?);
        let (down, up) = ancestral_step(sigma, next);
        x = &x + d * (down - sigma);
        if next > 0.0 {
            x = &x + noise(i) * up;
        }
        x = x.detach();
    }
    Ok(x)
}
