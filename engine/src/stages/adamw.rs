//! The train stage's optimizer arithmetic: AdamW with the EMA of the weights, on flat
//! buffers that the parameters are views into (one pass per operation over all of them,
//! and slices of them per batch lane).

use tch::{Device, Kind, Tensor};

/// AdamW's fixed hyper-parameters (Loshchilov & Hutter; β and ε as PyTorch's defaults).
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;
/// IDDPM trains without weight decay.
const WEIGHT_DECAY: f64 = 0.0;

/// One AdamW update and EMA step's scalars.
#[derive(Clone, Copy)]
pub(crate) struct AdamStep {
    lr: f64,
    bias1: f64,
    bias2: f64,
    /// The EMA's decay at this step.
    pub(crate) decay: f64,
}

impl AdamStep {
    /// The scalars of update `step` (0-based) at learning rate `lr`, with EMA decay `ema`.
    pub(crate) fn new(step: usize, lr: f64, ema: f64) -> AdamStep {
        let n = (step + 1) as i32;
        AdamStep {
            lr,
            bias1: 1.0 - ADAM_BETA1.powi(n),
            bias2: 1.0 - ADAM_BETA2.powi(n),
            // EMA with warm-up: decay min(ema, (1 + n) / (10 + n)) at update n, so that
            // short runs are not dominated by the initial weights.
            decay: ema.min((1.0 + step as f64) / (10.0 + step as f64)),
        }
    }

    /// Updates moments `m`, `v`, parameters `p` and their EMA `e` (slices of the flat buffers)
    /// from the gradient `g`, in place, in the order of operations of the textbook
    /// expressions (so the same roundings): every temporary would be one more allocation and
    /// pass over all the parameters, which dominates the step of a large net at small batches.
    pub(crate) fn apply(self, mut m: Tensor, mut v: Tensor, mut p: Tensor, mut e: Tensor, g: &Tensor) {
        m *= ADAM_BETA1;
        m += g * (1.0 - ADAM_BETA1);
        v *= ADAM_BETA2;
        v += g.square() * (1.0 - ADAM_BETA2);
        let mut denominator = &v / self.bias2;
        let _ = denominator.sqrt_();
        denominator += ADAM_EPS;
        let mut update = &m / self.bias1;
        update /= &denominator;
        update *= self.lr;
        update += &p * (self.lr * WEIGHT_DECAY);
        p -= &update;
        e *= self.decay;
        e += &p * (1.0 - self.decay);
    }
}

/// Makes every tensor of `tensors` a view into one new flat buffer holding their values.
pub(crate) fn share_one_buffer(tensors: &[Tensor]) -> Tensor {
    if tensors.is_empty() {
        return Tensor::zeros([0], (Kind::Float, Device::Cpu));
    }
    let flat = Tensor::cat(&tensors.iter().map(|t| t.detach().reshape([-1])).collect::<Vec<_>>(), 0);
    let mut offset = 0;
    for t in tensors {
        let n = t.numel() as i64;
        let mut handle = t.shallow_clone();
        tch::no_grad(|| handle.set_data(&flat.narrow(0, offset, n).view(t.size().as_slice())));
        offset += n;
    }
    flat
}
