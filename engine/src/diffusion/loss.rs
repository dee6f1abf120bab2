//! Training objectives (Ho et al. 2020; Nichol & Dhariwal 2021).

use anyhow::{bail, Result};
pub use difflow_core::params::train::LossType;
use tch::Tensor;

use super::vlb::mean_flat;
use super::Process;

/// IDDPM's λ for the hybrid loss.
pub const HYBRID_LAMBDA: f64 = 0.001;

impl Process {
    /// The per-item loss [B] at indices `t` for x_t = q_sample(x₀, t, noise) and the network's
    /// `output` on it, each item's MSE term scaled by its `weight` [B] when given (the
    /// Min-SNR-γ weights of its timestep); the VLB term, which trains the variance, is not.
    ///
    /// The VLB term is L_t in bits per dimension; L_vlb = Σ_t L_t ≈ T·E_t[L_t], so the hybrid
    /// loss's λ·L_vlb is estimated by λ·T·L_t (improved-diffusion's `num_timesteps / 1000`).
    #[allow(clippy::too_many_arguments)]
    pub fn training_loss(
        &self,
        output: &Tensor,
        x0: &Tensor,
        xt: &Tensor,
        t: &Tensor,
        noise: &Tensor,
        loss: LossType,
        weight: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (prediction, v) = self.split_output(output);
        let mse = || {
            let mse = mean_flat(&(&prediction - self.target(x0, t, noise)).square());
            match weight {
                Some(w) => mse * w,
                None => mse,
            }
        };
        if weight.is_some() && loss == LossType::Vlb {
            bail!("loss weighting scales the MSE term, and loss = \"vlb\" has none");
        }
        Ok(match loss {
            LossType::Simple => mse(),
            LossType::Hybrid => {
                let Some(v) = v else {
                    bail!("the hybrid loss needs a model with `learn_sigma = true`");
                };
                let frozen = Tensor::cat(&[prediction.detach(), v], 1);
                let vb = self.vb_term_bits(&frozen, x0, xt, t, false)?;
                mse() + vb * (HYBRID_LAMBDA * self.steps() as f64)
            }
            LossType::Vlb => self.vb_term_bits(output, x0, xt, t, false)?,
        })
    }
}
