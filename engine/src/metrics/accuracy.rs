//! Accuracy of generated samples' labels under a classifier: overall and per class.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Overall accuracy and per-class accuracy (None for a class with no items) of predicted
/// labels against target labels, both int64 [N].
pub fn accuracy(predicted: &Tensor, target: &Tensor, classes: usize) -> Result<(f64, Vec<Option<f64>>)> {
    if predicted.size() != target.size() || predicted.dim() != 1 {
        bail!("accuracy: {:?} predictions for {:?} labels", predicted.size(), target.size());
    }
    let n = predicted.size()[0];
    if n == 0 {
        bail!("accuracy of an empty sample set");
    }
    let predicted: Vec<i64> = Vec::try_from(predicted.to_device(Device::Cpu).to_kind(Kind::Int64))?;
    let target: Vec<i64> = Vec::try_from(target.to_device(Device::Cpu).to_kind(Kind::Int64))?;
    let mut correct = vec![0usize; classes];
    let mut total = vec![0usize; classes];
    let mut all_correct = 0usize;
    for (p, t) in predicted.iter().zip(&target) {
        if *t < 0 || *t as usize >= classes {
            bail!("label {t} is outside the classifier's {classes} classes");
        }
        total[*t as usize] += 1;
        if p == t {
            correct[*t as usize] += 1;
            all_correct += 1;
        }
    }
    let per_class = correct.iter().zip(&total).map(|(c, t)| (*t > 0).then(|| *c as f64 / *t as f64)).collect();
    Ok((all_correct as f64 / n as f64, per_class))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_class() {
        let target = Tensor::from_slice(&[0i64, 0, 1, 1, 1, 2]);
        let predicted = Tensor::from_slice(&[0i64, 1, 1, 1, 0, 2]);
        let (all, per) = accuracy(&predicted, &target, 4).unwrap();
        assert!((all - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(per, vec![Some(0.5), Some(2.0 / 3.0), Some(1.0), None]);
    }
}
