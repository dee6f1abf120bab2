//! Conditioning at sampling time: classifier-free guidance (Ho & Salimans 2022) and
//! classifier guidance (Dhariwal & Nichol 2021).

pub use difflow_core::params::guidance::GuidanceConfig;
use tch::{Kind, Tensor};

use super::vlb::ModelFn;
use crate::models::Classifier;

/// ε̃ = (1 + w) ε(x, c) − w ε(x, ∅).
pub fn cfg_combine(cond: &Tensor, uncond: &Tensor, scale: f64) -> Tensor {
    cond * (1.0 + scale) - uncond * scale
}

/// The network output under classifier-free guidance, from ONE batched forward of the
/// conditional and unconditional halves. Guidance combines only the first `channels`
/// channels (the prediction: ε, or v / x₀, which are affine in ε with the same coefficients
/// for both halves, so combining them is combining ε); the variance channels of a
/// `learn_sigma` model are taken from the conditional half. With w = 0 only the
/// conditional half is evaluated.
pub fn cfg_output(
    model: &ModelFn,
    x: &Tensor,
    t_model: &Tensor,
    y: &Tensor,
    null_class: i64,
    scale: f64,
    channels: i64,
) -> Tensor {
    if scale == 0.0 {
        // ε̃ = ε(x, c): the unconditional half would be computed only to be multiplied by 0.
        return model(x, t_model, Some(y));
    }
    let b = x.size()[0];
    let x2 = Tensor::cat(&[x, x], 0);
    let t2 = Tensor::cat(&[t_model, t_model], 0);
    let y2 = Tensor::cat(&[y.shallow_clone(), y.full_like(null_class)], 0);
    let out = model(&x2, &t2, Some(&y2));
    let (cond, uncond) = (out.narrow(0, 0, b), out.narrow(0, b, b));
    let guided = cfg_combine(&cond.narrow(1, 0, channels), &uncond.narrow(1, 0, channels), scale);
    let c_all = cond.size()[1];
    if c_all > channels {
        Tensor::cat(&[guided, cond.narrow(1, channels, c_all - channels)], 1)
    } else {
        guided
    }
}

/// s · ∇_x log p(y | x_t, t) by autograd through the classifier.
pub fn classifier_gradient(
    classifier: &dyn Classifier,
    x: &Tensor,
    t_model: &Tensor,
    y: &Tensor,
    scale: f64,
) -> Tensor {
    tch::with_grad(|| {
        let x_in = x.detach().to_kind(Kind::Float).set_requires_grad(true);
        let logits = classifier.forward(&x_in, Some(t_model), false);
        let log_probs = logits.log_softmax(-1, Kind::Float);
        let selected = log_probs.gather(1, &y.to_kind(Kind::Int64).unsqueeze(1), false).sum(Kind::Float);
        let grads = Tensor::run_backward(&[selected], &[&x_in], false, false);
        (&grads[0] * scale).to_kind(x.kind())
    })
}

/// DDPM: μ̃ = μ + Σ g, with g = s∇ log p(y | x_t) (Dhariwal & Nichol, Algorithm 1).
pub fn guided_mean(mean: &Tensor, variance: &Tensor, gradient: &Tensor) -> Tensor {
    mean + variance * gradient
}

/// DDIM / DPM-Solver: ε̃ = ε − √(1 − ᾱ_t) g (Dhariwal & Nichol, Algorithm 2).
pub fn guided_eps(eps: &Tensor, sqrt_one_minus_alpha_bar: &Tensor, gradient: &Tensor) -> Tensor {
    eps - sqrt_one_minus_alpha_bar * gradient
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use tch::{Device, Kind, Tensor};

    use super::cfg_output;

    #[test]
    fn cfg_with_weight_zero_evaluates_the_conditional_half_alone() {
        let batches = RefCell::new(Vec::new());
        // A stand-in net whose output depends on the label: ε = x · (1 + y).
        let net = |x: &Tensor, _t: &Tensor, y: Option<&Tensor>| {
            batches.borrow_mut().push(x.size()[0]);
            x * (y.unwrap().to_kind(Kind::Float) + 1.0).view([-1, 1])
        };
        let x = Tensor::randn([3, 2], (Kind::Float, Device::Cpu));
        let t = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2]);
        let unguided = cfg_output(&net, &x, &t, &y, 5, 0.0, 2);
        assert_eq!(*batches.borrow(), vec![3]);
        assert!(unguided.equal(&(&x * (y.to_kind(Kind::Float) + 1.0).view([-1, 1]))));
        // w > 0 still evaluates both halves in one batch and mixes them.
        let guided = cfg_output(&net, &x, &t, &y, 5, 1.0, 2);
        assert_eq!(*batches.borrow(), vec![3, 6]);
        let expected = &x * (y.to_kind(Kind::Float) + 1.0).view([-1, 1]) * 2.0 - &x * 6.0;
        assert!(guided.allclose(&expected, 1e-6, 1e-6, false));
    }
}
