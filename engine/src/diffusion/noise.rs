//! Counter-based noise: the Gaussian noise of sample `i` at step `k` is a pure function of
//! (stage seed, i, k), generated on the CPU. Samples therefore do not depend on the
//! sampling batch size, the batch order or the device.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::rng::{derive_seed, SplitMix};

/// Per-sample noise for a stage: sample `index` at `stream` (a step number, or one of the
/// named streams below) always gets the same values.
#[derive(Debug, Clone, Copy)]
pub struct SampleNoise {
    pub seed: u64,
}

/// The stream of the initial x_T.
pub const STREAM_INIT: u64 = u64::MAX;

impl SampleNoise {
    /// Standard normal noise [indices.len(), shape…] as float32 on `device`.
    pub fn normal(&self, indices: &[u64], stream: u64, shape: &[i64], device: Device) -> Tensor {
        let per: usize = shape.iter().product::<i64>() as usize;
        let mut values = vec![0f32; indices.len() * per];
        values
            .par_chunks_mut(per.max(1))
            .zip(indices.par_iter())
            .for_each(|(chunk, &i)| SplitMix::new(derive_seed(&[self.seed, i, stream])).fill_normal(chunk));
        let mut full = vec![indices.len() as i64];
        full.extend_from_slice(shape);
        Tensor::from_slice(&values).view(full.as_slice()).to_device(device).to_kind(Kind::Float)
    }
}
