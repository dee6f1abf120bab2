//! Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the
//! union of balls around its points whose radius is the distance to the k-th nearest
//! neighbour (k = 3, the point itself excluded). Precision: the share of generated points
//! inside the real manifold; recall: the share of real points inside the generated one.
//! Pairwise distances are computed in row batches on the features' device.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

pub const K: i64 = difflow_core::params::measure::PRECISION_RECALL_K as i64;
const ROW_BATCH: i64 = 1024;

/// Squared Euclidean distances [r, n] between rows of `a` [r, D] and `b` [n, D].
fn squared_distances(a: &Tensor, b: &Tensor, b_norms: &Tensor) -> Tensor {
    let a_norms = a.square().sum_dim_intlist(1, true, Kind::Float);
    (a_norms + b_norms.unsqueeze(0) - a.matmul(&b.tr()) * 2.0).clamp_min(0.0)
}

/// Squared k-NN radius of every row of `x` within `x` (the zero self-distance excluded).
fn knn_radii(x: &Tensor, k: i64) -> Tensor {
    let norms = x.square().sum_dim_intlist(1, false, Kind::Float);
    let n = x.size()[0];
    let mut radii = Vec::new();
    let mut start = 0;
    while start < n {
        let len = ROW_BATCH.min(n - start);
        let d = squared_distances(&x.narrow(0, start, len), x, &norms);
        radii.push(d.kthvalue(k + 1, 1, false).0);
        start += len;
    }
    Tensor::cat(&radii, 0)
}

/// The share of `queries` inside the union of balls (centres `x`, squared radii `radii`).
fn coverage(queries: &Tensor, x: &Tensor, radii: &Tensor) -> f64 {
    let norms = x.square().sum_dim_intlist(1, false, Kind::Float);
    let n = queries.size()[0];
    let mut inside = 0i64;
    let mut start = 0;
    while start < n {
        let len = ROW_BATCH.min(n - start);
        let d = squared_distances(&queries.narrow(0, start, len), x, &norms);
        let hit = d.le_tensor(&radii.unsqueeze(0)).any_dim(1, false);
        inside += hit.sum(Kind::Int64).int64_value(&[]);
        start += len;
    }
    inside as f64 / n as f64
}

/// (precision, recall) of generated features against real ones, [N, D] each, N > k.
pub fn precision_recall(real: &Tensor, generated: &Tensor, k: i64, device: Device) -> Result<(f64, f64)> {
    let (nr, ng) = (real.size()[0], generated.size()[0]);
    if nr <= k || ng <= k {
        bail!("precision/recall with k = {k} need more than {k} items on each side (got {nr} real, {ng} generated)");
    }
    if real.size()[1] != generated.size()[1] {
        bail!("precision/recall: features of dimension {} and {}", real.size()[1], generated.size()[1]);
    }
    tch::no_grad(|| {
        let real = real.to_device(device).to_kind(Kind::Float);
        let generated = generated.to_device(device).to_kind(Kind::Float);
        let real_radii = knn_radii(&real, k);
        let generated_radii = knn_radii(&generated, k);
        let precision = coverage(&generated, &real, &real_radii);
        let recall = coverage(&real, &generated, &generated_radii);
        Ok((precision, recall))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;

    fn normals(seed: u64, rows: i64, cols: i64) -> Tensor {
        SplitMix::from_state(seed).normals(rows, cols).to_kind(Kind::Float)
    }

    #[test]
    fn identical_sets_score_one() {
        let x = normals(3, 300, 16);
        let (p, r) = precision_recall(&x, &x.copy(), K, Device::Cpu).unwrap();
        assert_eq!((p, r), (1.0, 1.0));
    }

    #[test]
    fn far_apart_sets_score_zero() {
        let (x, y) = (normals(4, 200, 16), normals(40, 200, 16) + 100.0);
        assert_eq!(precision_recall(&x, &y, K, Device::Cpu).unwrap(), (0.0, 0.0));
    }

    #[test]
    fn mode_collapse_keeps_precision_and_loses_recall() {
        // Generated points cover one of two real clusters: precise, but half the recall at most.
        let real = Tensor::cat(&[normals(5, 200, 8), normals(50, 200, 8) + 50.0], 0);
        let generated = normals(500, 400, 8);
        let (p, r) = precision_recall(&real, &generated, K, Device::Cpu).unwrap();
        assert!(p > 0.8, "precision {p}");
        assert!(r <= 0.5 && r > 0.3, "recall {r}");
    }
}
