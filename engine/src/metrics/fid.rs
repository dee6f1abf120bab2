//! Feature statistics (μ, Σ) and the Fréchet distance between two Gaussians, in float64.
//!
//! FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½. The trace of the square root is taken
//! from the eigenvalues of the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½, which has the eigenvalues
//! of Σ₁Σ₂: symmetric eigendecompositions are stable where a general `sqrtm` of the
//! non-symmetric product (scipy's, in pytorch-fid) can return complex noise on singular Σ.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

pub const STATS_FILE: &str = "stats.safetensors";

/// Mean [D] and covariance [D, D] (unbiased, as `np.cov`) of N feature vectors, float64.
pub struct FeatureStats {
    pub mu: Tensor,
    pub sigma: Tensor,
}

impl FeatureStats {
    /// Statistics of features [N, D] (any float kind, any device); needs N ≥ 2.
    pub fn of(features: &Tensor) -> Result<FeatureStats> {
        let size = features.size();
        if size.len() != 2 || size[0] < 2 {
            bail!("feature statistics need at least 2 feature vectors, got a tensor of shape {size:?}");
        }
        let f = features.to_device(Device::Cpu).to_kind(Kind::Double);
        let mu = f.mean_dim(0, false, Kind::Double);
        let centred = &f - mu.unsqueeze(0);
        let sigma = centred.tr().matmul(&centred) / (size[0] - 1) as f64;
        Ok(FeatureStats { mu, sigma })
    }

    pub fn dim(&self) -> i64 {
        self.mu.size()[0]
    }

    /// Writes `mu` and `sigma` (float64) as safetensors.
    pub fn write(&self, path: &Path) -> Result<()> {
        Tensor::write_safetensors(&[("mu", &self.mu.contiguous()), ("sigma", &self.sigma.contiguous())], path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<FeatureStats> {
        let file = crate::data::store::TensorFile::read(path)?;
        let (mu, sigma) = (file.take("mu")?.to_kind(Kind::Double), file.take("sigma")?.to_kind(Kind::Double));
        let d = mu.size()[0];
        if mu.dim() != 1 || sigma.size() != [d, d] {
            bail!("{}: `mu` {:?} and `sigma` {:?} do not match", path.display(), mu.size(), sigma.size());
        }
        Ok(FeatureStats { mu, sigma })
    }
}

/// Σ^½ of a symmetric PSD matrix (negative eigenvalues from rounding are clipped to 0).
fn sqrt_psd(sigma: &Tensor) -> Result<Tensor> {
    let symmetric = (sigma + sigma.tr()) / 2.0;
    let (w, v) = symmetric.f_linalg_eigh("L")?;
    let root = w.clamp_min(0.0).sqrt();
    Ok((&v * root.unsqueeze(0)).matmul(&v.tr()))
}

/// tr (Σ₁Σ₂)^½ via the eigenvalues of Σ₁^½ Σ₂ Σ₁^½.
fn trace_sqrt_product(sigma1: &Tensor, sigma2: &Tensor) -> Result<f64> {
    let s1 = sqrt_psd(sigma1)?;
    let inner = s1.matmul(sigma2).matmul(&s1);
    let inner = (&inner + inner.tr()) / 2.0;
    let eig = inner.f_linalg_eigvalsh("L")?;
    Ok(eig.clamp_min(0.0).sqrt().sum(Kind::Double).double_value(&[]))
}

/// The Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64. If the
/// eigendecomposition fails or gives a non-finite value, εI (ε = 1e-6) is added to both
/// covariances, as pytorch-fid does for a singular product.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.dim() != b.dim() {
        bail!("cannot compare feature statistics of dimension {} and {}", a.dim(), b.dim());
    }
    let (s1, s2) = (a.sigma.to_kind(Kind::Double), b.sigma.to_kind(Kind::Double));
    let diff = a.mu.to_kind(Kind::Double) - b.mu.to_kind(Kind::Double);
    let mean_term = diff.dot(&diff).double_value(&[]);
    let traces = s1.trace().double_value(&[]) + s2.trace().double_value(&[]);
    let cross = match trace_sqrt_product(&s1, &s2) {
        Ok(v) if v.is_finite() => v,
        _ => {
            let offset = Tensor::eye(a.dim(), (Kind::Double, Device::Cpu)) * 1e-6;
            trace_sqrt_product(&(&s1 + &offset), &(&s2 + &offset))
                .context("the matrix square root of the covariance product failed even with εI added")?
        }
    };
    let fid = mean_term + traces - 2.0 * cross;
    if !fid.is_finite() {
        bail!("the Fréchet distance is not finite (features with NaN or infinite values?)");
    }
    // Rounding can leave -1e-10 for identical statistics; a distance is never negative.
    Ok(fid.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;

    fn gaussian(n: i64, mean: &[f64], std: &[f64], seed: u64) -> Tensor {
        let z = SplitMix::from_state(seed).normals(n, mean.len() as i64);
        z * Tensor::from_slice(std).unsqueeze(0) + Tensor::from_slice(mean).unsqueeze(0)
    }

    #[test]
    fn identical_sets_have_zero_distance() {
        let x = gaussian(500, &[0.0; 16], &[1.0; 16], 1);
        let s = FeatureStats::of(&x).unwrap();
        assert!(frechet_distance(&s, &s).unwrap() < 1e-8);
    }

    #[test]
    fn rank_deficient_covariances_stay_finite() {
        // 5 vectors in 64 dimensions: Σ has rank 4, like FID on a handful of images.
        let x = gaussian(5, &[0.0; 64], &[1.0; 64], 2);
        let y = gaussian(5, &[0.5; 64], &[1.0; 64], 3);
        let (a, b) = (FeatureStats::of(&x).unwrap(), FeatureStats::of(&y).unwrap());
        let d = frechet_distance(&a, &b).unwrap();
        assert!(d.is_finite() && d > 0.0);
        assert!(frechet_distance(&a, &a).unwrap() < 1e-6);
    }

    #[test]
    fn gaussian_samples_match_the_closed_form() {
        // Diagonal covariances commute: FID = ‖μ₁ − μ₂‖² + Σᵢ (σ₁ᵢ − σ₂ᵢ)².
        let (m1, s1) = ([0.0, 1.0, -1.0, 2.0], [1.0, 2.0, 0.5, 1.5]);
        let (m2, s2) = ([0.5, 1.0, 0.0, 2.0], [1.5, 1.0, 0.5, 3.0]);
        let closed: f64 = m1.iter().zip(&m2).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
            + s1.iter().zip(&s2).map(|(a, b)| (a - b) * (a - b)).sum::<f64>();
        let a = FeatureStats::of(&gaussian(200_000, &m1, &s1, 4)).unwrap();
        let b = FeatureStats::of(&gaussian(200_000, &m2, &s2, 5)).unwrap();
        let fid = frechet_distance(&a, &b).unwrap();
        assert!((fid - closed).abs() < 0.03 * closed, "FID {fid} vs closed form {closed}");
    }

    #[test]
    fn non_commuting_covariances_match_the_exact_value() {
        // Σ₁ = I: tr(Σ₂^½) is the sum of the square roots of Σ₂'s eigenvalues.
        let m = Tensor::from_slice(&[2.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0, 4.0]).view([3, 3]);
        let a = FeatureStats {
            mu: Tensor::zeros([3], (Kind::Double, Device::Cpu)),
            sigma: Tensor::eye(3, (Kind::Double, Device::Cpu)),
        };
        let b = FeatureStats { mu: Tensor::zeros([3], (Kind::Double, Device::Cpu)), sigma: m.shallow_clone() };
        let eig = m.linalg_eigvalsh("L");
        let expected = 3.0 + m.trace().double_value(&[]) - 2.0 * eig.sqrt().sum(Kind::Double).double_value(&[]);
        assert!((frechet_distance(&a, &b).unwrap() - expected).abs() < 1e-10);
    }
}
