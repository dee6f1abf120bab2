//! Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), over 10 splits,
//! mean ± standard deviation (population, as `np.std`), from logits in float64.
//! Splits are consecutive (item order), as in the original code; torch-fidelity shuffles
//! first, which changes the std slightly but not the mean's expectation.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

pub const SPLITS: usize = difflow_core::params::measure::INCEPTION_SCORE_SPLITS;

/// IS mean and std of logits [N, C]; with fewer than `splits` items each item is a split.
pub fn inception_score(logits: &Tensor, splits: usize) -> Result<(f64, f64)> {
    let size = logits.size();
    if size.len() != 2 || size[0] == 0 {
        bail!("the Inception Score needs logits [N, classes] with N ≥ 1, got {size:?}");
    }
    let n = size[0] as usize;
    let splits = splits.clamp(1, n);
    let logits = logits.to_device(Device::Cpu).to_kind(Kind::Double);
    let log_p = logits.log_softmax(1, Kind::Double);
    let p = log_p.exp();
    let mut scores = Vec::with_capacity(splits);
    for i in 0..splits {
        let (start, end) = (i * n / splits, (i + 1) * n / splits);
        let chunk_p = p.narrow(0, start as i64, (end - start) as i64);
        let chunk_log_p = log_p.narrow(0, start as i64, (end - start) as i64);
        let log_q = chunk_p.mean_dim(0, true, Kind::Double).log();
        let kl = (&chunk_p * (chunk_log_p - log_q)).sum_dim_intlist(1, false, Kind::Double);
        scores.push(kl.mean(Kind::Double).double_value(&[]).exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok((mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_uniform_predictions_score_the_class_count() {
        // 1000 items, each predicted with certainty, classes used equally: IS = 10 exactly.
        let classes = 10;
        let labels = Tensor::arange(1000, (Kind::Int64, Device::Cpu)).remainder(classes);
        let logits = labels.one_hot(classes).to_kind(Kind::Double) * 100.0;
        let (mean, std) = inception_score(&logits, SPLITS).unwrap();
        assert!((mean - 10.0).abs() < 1e-6, "IS {mean}");
        assert!(std < 1e-6);
    }

    #[test]
    fn uninformative_predictions_score_one() {
        let logits = Tensor::zeros([50, 7], (Kind::Float, Device::Cpu));
        let (mean, _) = inception_score(&logits, SPLITS).unwrap();
        assert!((mean - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_single_class_scores_one_even_when_confident() {
        let logits = Tensor::zeros([40, 5], (Kind::Double, Device::Cpu));
        let _ = logits.narrow(1, 2, 1).fill_(50.0);
        let (mean, _) = inception_score(&logits, SPLITS).unwrap();
        assert!((mean - 1.0).abs() < 1e-9);
    }
}
