//! Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of MMD² with
//! the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over random subsets
//! (100 subsets of min(1000, n₁, n₂) items each, as torch-fidelity), mean ± std, float64.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::rng::SplitMix;

pub const SUBSETS: usize = 100;
pub const SUBSET_SIZE: usize = 1000;
/// The subsets are drawn from this seed: the same features always give the same KID.
pub const SEED: u64 = 2020;

fn kernel(x: &Tensor, y: &Tensor) -> Tensor {
    let d = x.size()[1] as f64;
    (x.matmul(&y.tr()) / d + 1.0).pow_tensor_scalar(3)
}

/// Unbiased MMD² between two equally sized sets [m, D] (m ≥ 2), float64.
pub fn mmd2_unbiased(x: &Tensor, y: &Tensor) -> f64 {
    let m = x.size()[0] as f64;
    let kxx = kernel(x, x);
    let kyy = kernel(y, y);
    let kxy = kernel(x, y);
    let off_diagonal = |k: &Tensor| (k.sum(Kind::Double) - k.trace()).double_value(&[]);
    off_diagonal(&kxx) / (m * (m - 1.0)) + off_diagonal(&kyy) / (m * (m - 1.0))
        - 2.0 * kxy.sum(Kind::Double).double_value(&[]) / (m * m)
}

/// KID mean and std (population) of features [n₁, D] and [n₂, D].
pub fn kernel_inception_distance(a: &Tensor, b: &Tensor, subsets: usize, subset_size: usize) -> Result<(f64, f64)> {
    let (na, nb) = (a.size()[0] as usize, b.size()[0] as usize);
    if a.size()[1] != b.size()[1] {
        bail!("KID: features of dimension {} and {} cannot be compared", a.size()[1], b.size()[1]);
    }
    let m = subset_size.min(na).min(nb);
    if m < 2 {
        bail!("KID needs at least 2 items on each side (got {na} and {nb})");
    }
    let a = a.to_device(Device::Cpu).to_kind(Kind::Double);
    let b = b.to_device(Device::Cpu).to_kind(Kind::Double);
    let mut rng = SplitMix::from_state(SEED);
    let values: Vec<f64> = (0..subsets.max(1))
        .map(|_| {
            let ia = Tensor::from_slice(&rng.choose(na, m));
            let ib = Tensor::from_slice(&rng.choose(nb, m));
            mmd2_unbiased(&a.index_select(0, &ia), &b.index_select(0, &ib))
        })
        .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64;
    Ok((mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbiased_on_identical_distributions() {
        // Two independent samples of one distribution: the estimate centres on 0 (a biased
        // estimator would stay clearly positive), while a shifted distribution is far from 0.
        let mut rng = SplitMix::from_state(7);
        let (x, y) = (rng.normals(2000, 32), rng.normals(2000, 32));
        let (mean, std) = kernel_inception_distance(&x, &y, 50, 200).unwrap();
        assert!(mean.abs() < 3.0 * std / (50f64).sqrt() + 1e-4, "KID {mean} ± {std}");
        let z = rng.normals(2000, 32) + 0.5;
        let (shifted, _) = kernel_inception_distance(&x, &z, 50, 200).unwrap();
        assert!(shifted > 20.0 * mean.abs().max(1e-4), "shifted KID {shifted} vs {mean}");
    }

    #[test]
    fn the_diagonal_correction_removes_the_bias() {
        // The V-statistic (diagonal kept) of two samples of one distribution is positive by
        // about 2(E k(x,x) − E k(x,y))/m; the unbiased estimate centres on 0.
        let mut rng = SplitMix::from_state(8);
        let m = 100.0;
        let mut unbiased = 0.0;
        let mut biased = 0.0;
        for _ in 0..20 {
            let (x, y) = (rng.normals(100, 8), rng.normals(100, 8));
            unbiased += mmd2_unbiased(&x, &y) / 20.0;
            let total = |a: &Tensor, b: &Tensor| kernel(a, b).sum(Kind::Double).double_value(&[]) / (m * m);
            biased += (total(&x, &x) + total(&y, &y) - 2.0 * total(&x, &y)) / 20.0;
        }
        assert!(biased > 10.0 * unbiased.abs(), "biased {biased}, unbiased {unbiased}");
    }
}
