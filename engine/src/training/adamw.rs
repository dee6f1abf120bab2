//! The train stage's optimizer arithmetic: AdamW with the EMA of the weights, on flat
//! buffers that the parameters are views into (one pass per operation over all of them,
//! and slices of them per batch lane).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{nn, Device, Kind, Tensor};

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
    weight_decay: f64,
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
            weight_decay: WEIGHT_DECAY,
            bias1: 1.0 - ADAM_BETA1.powi(n),
            bias2: 1.0 - ADAM_BETA2.powi(n),
            decay: difflow_core::params::train::ema_decay(ema, step),
        }
    }

    /// These scalars with decoupled weight decay `weight_decay` (training a denoiser uses none).
    pub(crate) fn with_weight_decay(self, weight_decay: f64) -> AdamStep {
        AdamStep { weight_decay, ..self }
    }

    /// Updates moments `m`, `v`, parameters `p` and their EMA `e` (slices of the flat buffers)
    /// from the gradient `g`, in place, in the order of operations of the textbook
    /// expressions (so the same roundings): every temporary would be one more allocation and
    /// pass over all the parameters, which dominates the step of a large net at small batches.
    pub(crate) fn apply(self, m: Tensor, v: Tensor, p: Tensor, mut e: Tensor, g: &Tensor) {
        let p = self.apply_adam(m, v, p, g);
        e *= self.decay;
        e += &p * (1.0 - self.decay);
    }

    /// [`AdamStep::apply`] without an EMA; returns `p`.
    pub(crate) fn apply_adam(self, mut m: Tensor, mut v: Tensor, mut p: Tensor, g: &Tensor) -> Tensor {
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
        update += &p * (self.lr * self.weight_decay);
        p -= &update;
        p
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

/// A store's trainable parameters as views into one flat buffer, sorted by name, with
/// AdamW's moments beside it: what a training stage updates each step and checkpoints.
pub(crate) struct FlatParams {
    names: Vec<String>,
    pub(crate) params: Vec<Tensor>,
    pub(crate) flat: Tensor,
    pub(crate) first_moment: Tensor,
    pub(crate) second_moment: Tensor,
}

impl FlatParams {
    /// The trainable variables among `variables` (name → tensor), in name order.
    pub(crate) fn new(variables: &BTreeMap<String, Tensor>) -> FlatParams {
        let (names, params): (Vec<String>, Vec<Tensor>) =
            variables.iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n.clone(), t.shallow_clone())).unzip();
        let flat = share_one_buffer(&params);
        let (first_moment, second_moment) = (flat.zeros_like(), flat.zeros_like());
        FlatParams { names, params, flat, first_moment, second_moment }
    }

    /// The trainable variables of `vs`.
    pub(crate) fn of_store(vs: &nn::VarStore) -> FlatParams {
        FlatParams::new(&vs.variables().into_iter().collect())
    }

    /// (offset, numel, shape) of each parameter inside the flat buffers.
    fn layout(&self) -> Vec<(i64, i64, Vec<i64>)> {
        let mut offset = 0;
        self.params
            .iter()
            .map(|p| {
                let n = p.numel() as i64;
                offset += n;
                (offset - n, n, p.size())
            })
            .collect()
    }

    /// Writes the moments by parameter name (`m.NAME`, `v.NAME`) and the `step` reached.
    pub(crate) fn save_moments(&self, path: &Path, step: usize) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (prefix, flat) in [("m", &self.first_moment), ("v", &self.second_moment)] {
            for (name, (offset, n, shape)) in self.names.iter().zip(self.layout()) {
                named.push((format!("{prefix}.{name}"), flat.narrow(0, offset, n).view(shape.as_slice())));
            }
        }
        named.push(("step".into(), Tensor::from_slice(&[step as i64])));
        Tensor::write_safetensors(&named, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Reads the moments [`FlatParams::save_moments`] wrote; every parameter must have both.
    pub(crate) fn load_moments(&mut self, path: &Path) -> Result<()> {
        let device = self.flat.device();
        let tensors = Tensor::read_safetensors(path)?;
        let slots: BTreeMap<&str, (i64, i64, Vec<i64>)> =
            self.names.iter().map(String::as_str).zip(self.layout()).collect();
        let mut found = 0;
        tch::no_grad(|| {
            for (name, t) in tensors {
                let (flat, key) = if let Some(k) = name.strip_prefix("m.") {
                    (&mut self.first_moment, k)
                } else if let Some(k) = name.strip_prefix("v.") {
                    (&mut self.second_moment, k)
                } else {
                    continue;
                };
                if let Some((offset, n, shape)) = slots.get(key) {
                    if t.size() == *shape {
                        flat.narrow(0, *offset, *n).copy_(&t.to_device(device).reshape([-1]));
                        found += 1;
                    }
                }
            }
        });
        if found != 2 * self.params.len() {
            bail!("optimiser moments do not match the model");
        }
        Ok(())
    }
}
