#!/usr/bin/env python3
"""Reference values for the engine's diffusion math, computed independently in numpy
float64 from the papers' formulas (Ho et al. 2020; Nichol & Dhariwal 2021; Song et al.
2021; Dhariwal & Nichol 2021; Ho & Salimans 2022; Chen 2023; Lin et al. 2024; Lu et al.
2022). Writes engine/tests/reference/numbers.json, which engine/tests/numbers.rs compares
against at float64 tolerance; its "recipes" part comes from diffusers and torch
(reference_recipes.py, compared by engine/tests/recipes.rs).

    .venv/bin/python scripts/reference_numbers.py

The samplers' numbers (Karras et al. 2022 after k-diffusion) are not stored: the test runs

    .venv/bin/python scripts/reference_numbers.py samplers

which prints them as JSON, so a new sampler is its formula and its cases here and its
comparison in the test.
"""
import json
import math
import os
import sys

import numpy as np
from reference_recipes import recipe_cases

OUT = os.path.join(os.path.dirname(__file__), "..", "engine", "tests", "reference", "numbers.json")
rng = np.random.default_rng(20260101)


# --- schedules -------------------------------------------------------------------------

def betas_for_alpha_bar(T, alpha_bar, max_beta):
    return np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)])


def linear_betas(T, start=1e-4, end=0.02, scale_with_steps=True):
    scale = 1000.0 / T if scale_with_steps else 1.0
    return np.linspace(scale * start, scale * end, T, dtype=np.float64)


def cosine_betas(T, s=0.008, max_beta=0.999):
    return betas_for_alpha_bar(T, lambda t: math.cos((t + s) / (1 + s) * math.pi / 2) ** 2, max_beta)


def sigmoid_betas(T, start=-3.0, end=3.0, tau=1.0):
    # Chen 2023, Algorithm 1: gamma(t) is the signal level alpha_bar(t).
    sig = lambda x: 1 / (1 + math.exp(-x))
    v_start, v_end = sig(start / tau), sig(end / tau)

    def gamma(t):
        v = sig((t * (end - start) + start) / tau)
        return min(max((v_end - v) / (v_end - v_start), 1e-9), 1.0)

    return betas_for_alpha_bar(T, gamma, 0.999)


def zero_terminal_snr(betas):
    # Lin et al. 2024, Algorithm 1.
    ab_sqrt = np.sqrt(np.cumprod(1 - betas))
    a0, aT = ab_sqrt[0], ab_sqrt[-1]
    ab_sqrt = (ab_sqrt - aT) * a0 / (a0 - aT)
    ab = ab_sqrt ** 2
    alphas = np.concatenate([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas


SCHEDULES = {
    "linear": lambda T, **k: linear_betas(T, **k),
    "cosine": lambda T, **k: cosine_betas(T, **k),
    "sigmoid": lambda T, **k: sigmoid_betas(T, **k),
}


def schedule_betas(spec):
    k = {key: v for key, v in spec.items() if key not in ("variant", "steps", "zero_terminal_snr")}
    b = SCHEDULES[spec["variant"]](spec["steps"], **k)
    return zero_terminal_snr(b) if spec.get("zero_terminal_snr") else b


# --- tables (Ho et al. 2020 eq. 6-7; improved-diffusion) -------------------------------

class Tables:
    def __init__(self, betas):
        self.betas = b = np.asarray(betas, dtype=np.float64)
        self.T = len(b)
        a = 1 - b
        self.ab = np.cumprod(a)
        self.ab_prev = np.concatenate([[1.0], self.ab[:-1]])
        self.post_var = b * (1 - self.ab_prev) / (1 - self.ab)
        self.post_logvar = np.log(np.concatenate([self.post_var[1:2], self.post_var[1:]]))
        self.coef1 = b * np.sqrt(self.ab_prev) / (1 - self.ab)
        self.coef2 = (1 - self.ab_prev) * np.sqrt(a) / (1 - self.ab)
        large = np.concatenate([self.post_var[1:2], b[1:]])
        self.large_var, self.large_logvar = large, np.log(large)


def col(v, t):
    return v[t][:, None]


def q_sample(tb, x0, t, noise):
    return col(np.sqrt(tb.ab), t) * x0 + col(np.sqrt(1 - tb.ab), t) * noise


def posterior(tb, x0, xt, t):
    mean = col(tb.coef1, t) * x0 + col(tb.coef2, t) * xt
    return mean, np.broadcast_to(col(tb.post_var, t), xt.shape), np.broadcast_to(col(tb.post_logvar, t), xt.shape)


def x0_from(tb, pred, xt, t, kind):
    ab = col(tb.ab, t)
    if kind == "eps":
        return (xt - np.sqrt(1 - ab) * pred) / np.sqrt(ab)
    if kind == "v":  # Salimans & Ho 2022: x0 = sqrt(ab) x_t - sqrt(1-ab) v
        return np.sqrt(ab) * xt - np.sqrt(1 - ab) * pred
    return pred


def eps_from_x0(tb, x0, xt, t):
    ab = col(tb.ab, t)
    return (xt - np.sqrt(ab) * x0) / np.sqrt(1 - ab)


def model_variance(tb, v, t, shape, variance):
    if variance == "fixed_small":
        return np.broadcast_to(col(tb.post_var, t), shape), np.broadcast_to(col(tb.post_logvar, t), shape)
    if variance == "fixed_large":
        return np.broadcast_to(col(tb.large_var, t), shape), np.broadcast_to(col(tb.large_logvar, t), shape)
    # Nichol & Dhariwal 2021 eq. 15 with the network output v in [-1, 1] mapped to (v+1)/2.
    frac = (v + 1) / 2
    logvar = frac * col(np.log(tb.betas), t) + (1 - frac) * col(tb.post_logvar, t)
    return np.exp(logvar), logvar


def p_mean_variance(tb, out, xt, t, case):
    c = xt.shape[1]
    pred, v = (out[:, :c], out[:, c:]) if case["learn_sigma"] else (out, None)
    var, logvar = model_variance(tb, v, t, xt.shape, case["variance"])
    x0 = x0_from(tb, pred, xt, t, case["prediction"])
    if case["clip"] is not None:
        x0 = np.clip(x0, -case["clip"], case["clip"])
    eps = eps_from_x0(tb, x0, xt, t)
    mean, _, _ = posterior(tb, x0, xt, t)
    return x0, eps, mean, var, logvar


def ddim_step(tb, x0, eps, t, eta, noise):
    # Song et al. 2021 eq. 12 and 16.
    ab, abp = col(tb.ab, t), col(tb.ab_prev, t)
    sigma = eta * np.sqrt((1 - abp) / (1 - ab)) * np.sqrt(1 - ab / abp)
    # At eta = 1, 1 - abp - sigma^2 is 0 up to rounding; keep the root real.
    out = np.sqrt(abp) * x0 + np.sqrt(np.maximum(1 - abp - sigma ** 2, 0.0)) * eps
    return out + (t != 0)[:, None] * sigma * noise


# --- the bound (Ho et al. 2020 §3.3) ----------------------------------------------------

def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def approx_cdf(x):
    # Ho et al.'s 0.5 * (1 + tanh(z)), z = sqrt(2/pi) (x + 0.044715 x^3), written as the
    # identical 1 / (1 + exp(-2z)), which does not cancel in the tails.
    z = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
    with np.errstate(over="ignore"):  # exp(+large) = inf gives the right limit, 0
        return 1.0 / (1.0 + np.exp(-2.0 * z))


def discretized_ll(x, means, log_scales):
    c = x - means
    inv = np.exp(-log_scales)
    cdf_plus = approx_cdf(inv * (c + 1 / 255))
    cdf_min = approx_cdf(inv * (c - 1 / 255))
    log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
    log_1m_cdf_min = np.log(np.maximum(1 - cdf_min, 1e-12))
    log_delta = np.log(np.maximum(cdf_plus - cdf_min, 1e-12))
    return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_1m_cdf_min, log_delta))


def gaussian_ll(x, means, log_scales):
    return -0.5 * ((x - means) * np.exp(-log_scales)) ** 2 - log_scales - 0.5 * math.log(2 * math.pi)


def vb_bits(tb, out, x0, xt, t, case):
    case = dict(case, clip=None)  # training never clips
    _, _, mean, _, logvar = p_mean_variance(tb, out, xt, t, case)
    tm, _, tlv = posterior(tb, x0, xt, t)
    kl = normal_kl(tm, tlv, mean, logvar).mean(1) / math.log(2)
    ll = discretized_ll if case["discrete"] else gaussian_ll
    nll = -ll(x0, mean, 0.5 * logvar).mean(1) / math.log(2)
    return np.where(t == 0, nll, kl)


# --- respacing (IDDPM §4; DDIM's quadratic; Lin et al.'s trailing) ---------------------

def space(T, n, spacing):
    if spacing == "uniform":  # IDDPM space_timesteps with one section
        if n == 1:
            return [T - 1]
        stride = (T - 1) / (n - 1)
        return sorted(set(round(i * stride) for i in range(n)))
    if spacing == "quadratic":
        return sorted(set(int(v) for v in (np.linspace(0, math.sqrt(T * 0.8), max(n, 2))[:n] ** 2)))
    return sorted(set(int(v) for v in (np.round(np.arange(T, 0, -T / n)).astype(int) - 1)))


def respaced_betas(tb, ts):
    last, out = 1.0, []
    for t in ts:
        out.append(1 - tb.ab[t] / last)
        last = tb.ab[t]
    return np.array(out)


# --- sigma samplers (Karras et al. 2022; k-diffusion sampling.py / external.py) -------------

def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0):
    ramp = np.linspace(0, 1, n)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return np.append((max_inv + ramp * (min_inv - max_inv)) ** rho, 0.0)


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    return (sigma_to ** 2 - sigma_up ** 2) ** 0.5, sigma_up


def sample_euler(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i]))
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i]))
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]))
            x = x + (d + d_2) / 2 * dt
    return x


def sample_euler_ancestral(model, x, sigmas, noises):
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noises[i] * sigma_up
    return x


def discrete_denoiser(tb, net, prediction, y=None, cfg=None, prototypes=None):
    """k-diffusion's DiscreteEpsDDPMDenoiser / DiscreteVDDPMDenoiser with quantized t (the
    nearest timestep in log sigma), plus CFG on the output and classifier guidance."""
    table = np.sqrt((1 - tb.ab) / tb.ab)

    def model(x, sigma):
        t = int(np.argmin(np.abs(np.log(table) - np.log(sigma))))
        ab = 1 / (1 + sigma ** 2)
        x_in = x * math.sqrt(ab)
        out = net(x_in, t, y)
        if cfg is not None:
            out = (1 + cfg) * out - cfg * net(x_in, t, np.full_like(y, 3))
        d = {"eps": x - sigma * out, "v": ab * x - sigma * math.sqrt(ab) * out, "x0": out}[prediction]
        if prototypes is not None:
            mu, scale = prototypes
            diff = x_in[:, None, :] - mu[None]
            logits = -0.5 * (diff ** 2).sum(-1)
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            grad = -(x_in - mu[y]) + (p[:, :, None] * diff).sum(1)
            d = d + scale * grad * sigma ** 2 * math.sqrt(ab)
        return d
    return model


def sampler_cases():
    # Its own generator: the cases do not depend on what the stored sections drew.
    rng = np.random.default_rng(20260102)
    out = {"sigmas": []}
    for (n, lo, hi, rho) in [(6, 0.002, 80.0, 7.0), (1, 0.1, 10.0, 7.0), (4, 0.03, 14.6, 3.0)]:
        out["sigmas"].append(dict(steps=n, sigma_min=lo, sigma_max=hi, rho=rho,
                                  expected=arr(get_sigmas_karras(n, lo, hi, rho))))
    # Step rules on a toy denoiser and given noise.
    toy = lambda x, sigma: 0.9 * x / (1 + sigma ** 2) + 0.1 * np.tanh(x)
    sigmas = get_sigmas_karras(5, 0.05, 20.0)
    x = rng.standard_normal((2, 3)) * sigmas[0]
    noises = rng.standard_normal((5, 2, 3))
    out["steps"] = dict(sigmas=arr(sigmas), x=arr(x), noise=arr(noises), euler=arr(sample_euler(toy, x, sigmas)),
                        heun=arr(sample_heun(toy, x, sigmas)),
                        euler_ancestral=arr(sample_euler_ancestral(toy, x, sigmas, noises)))
    # Whole chains of a net trained on a discrete schedule (linear, T = 1000; the default sigma range).
    tb = Tables(linear_betas(1000))
    table = np.sqrt((1 - tb.ab) / tb.ab)
    net = lambda x_in, t, y: np.tanh(x_in) * (0.5 + t / 1000) + (0 if y is None else 0.1 * y[:, None])
    mu = rng.uniform(-1, 1, (3, 2))
    x_init = rng.standard_normal((2, 2))
    y = np.array([0, 2])
    chains = []
    for (sampler, prediction, guidance) in [("euler", "eps", None), ("heun", "eps", None), ("heun", "v", None),
                                            ("euler", "x0", None), ("heun", "eps", "cfg"),
                                            ("euler", "eps", "classifier")]:
        sigmas = get_sigmas_karras(4, table[0], table[-1])
        model = discrete_denoiser(tb, net, prediction, y=None if guidance is None else y,
                                  cfg=2.0 if guidance == "cfg" else None,
                                  prototypes=(mu, 1.5) if guidance == "classifier" else None)
        run = sample_euler if sampler == "euler" else sample_heun
        chains.append(dict(sampler=sampler, prediction=prediction, guidance=guidance,
                           expected=arr(run(model, x_init * sigmas[0], sigmas))))
    out["chains"] = dict(x_init=arr(x_init), labels=arr(y), prototypes=arr(mu), cases=chains)
    return out


def arr(a):
    return np.asarray(a, dtype=np.float64).tolist()


def main():
    out = {"schedules": [], "respacing": [], "process": [], "elementwise": {}, "dpm_solver": []}

    probe = [0, 1, 2, 10, 100, 500, 900, 998, 999]
    for spec in [
        {"variant": "linear", "steps": 1000, "start": 1e-4, "end": 0.02, "scale_with_steps": True},
        {"variant": "linear", "steps": 100, "start": 1e-4, "end": 0.02, "scale_with_steps": True},
        {"variant": "cosine", "steps": 1000, "s": 0.008, "max_beta": 0.999},
        {"variant": "sigmoid", "steps": 1000, "start": -3.0, "end": 3.0, "tau": 1.0},
        {"variant": "sigmoid", "steps": 1000, "start": 0.0, "end": 3.0, "tau": 0.7},
    ]:
        for ztsnr in (False, True):
            s = dict(spec, zero_terminal_snr=ztsnr)
            b = schedule_betas(s)
            tb = Tables(b)
            at = [i for i in probe if i < s["steps"]]
            out["schedules"].append({
                "spec": s, "at": at, "betas": arr(b[at]), "alphas_cumprod": arr(tb.ab[at]),
                "posterior_variance": arr(tb.post_var[at]), "posterior_log_variance_clipped": arr(tb.post_logvar[at]),
            })

    cos = Tables(cosine_betas(1000))
    for spacing in ("uniform", "quadratic", "trailing"):
        for n in (10, 50, 1000):
            ts = space(1000, n, spacing)
            out["respacing"].append({"steps": 1000, "count": n, "spacing": spacing, "timesteps": ts,
                                     "betas": arr(respaced_betas(cos, ts))})

    B, D = 5, 3
    cases = []
    for prediction in ("eps", "v", "x0"):
        for variance in ("fixed_small", "fixed_large", "learned"):
            cases.append(dict(prediction=prediction, variance=variance, learn_sigma=variance == "learned",
                              clip=None, discrete=False, schedule={"variant": "cosine", "steps": 1000, "s": 0.008,
                                                                   "max_beta": 0.999, "zero_terminal_snr": False},
                              respace=None))
    cases.append(dict(prediction="eps", variance="learned", learn_sigma=True, clip=1.0, discrete=True,
                      schedule={"variant": "linear", "steps": 1000, "start": 1e-4, "end": 0.02,
                                "scale_with_steps": True, "zero_terminal_snr": False}, respace=None))
    cases.append(dict(prediction="v", variance="fixed_small", learn_sigma=False, clip=2.5, discrete=False,
                      schedule={"variant": "sigmoid", "steps": 1000, "start": -3.0, "end": 3.0, "tau": 1.0,
                                "zero_terminal_snr": True}, respace=None))
    for spacing in ("uniform", "quadratic", "trailing"):
        cases.append(dict(prediction="eps", variance="fixed_large", learn_sigma=False, clip=1.0, discrete=True,
                          schedule={"variant": "cosine", "steps": 1000, "s": 0.008, "max_beta": 0.999,
                                    "zero_terminal_snr": False}, respace={"spacing": spacing, "count": 20}))

    for case in cases:
        full = Tables(schedule_betas(case["schedule"]))
        if case["respace"]:
            ts = space(full.T, case["respace"]["count"], case["respace"]["spacing"])
            tb = Tables(respaced_betas(full, ts))
            t = np.array([0, 1, 7, len(ts) - 2, len(ts) - 1])
        else:
            tb = full
            # The last index of a zero-terminal-SNR schedule has alpha_bar = 0, where x0 from eps
            # (used by classifier guidance) is undefined.
            t = np.array([0, 1, 50, 500, 998 if case["schedule"]["zero_terminal_snr"] else 999])
        x0 = rng.uniform(-1, 1, (B, D))
        if case["discrete"]:
            x0 = np.round((x0 + 1) * 127.5) / 127.5 - 1
            x0[0, 0], x0[1, 1] = -1.0, 1.0
        noise = rng.standard_normal((B, D))
        xt = q_sample(tb, x0, t, noise)
        C = 2 * D if case["learn_sigma"] else D
        output = rng.standard_normal((B, C)) * 0.8
        if case["learn_sigma"]:
            output[:, D:] = rng.uniform(-1, 1, (B, D))
        step_noise = rng.standard_normal((B, D))
        m, v, lv = posterior(tb, x0, xt, t)
        px0, peps, pmean, pvar, plogvar = p_mean_variance(tb, output, xt, t, case)
        ddpm = pmean + (t != 0)[:, None] * np.exp(0.5 * plogvar) * step_noise
        # Classifier-free guidance: eps~ = (1+w) eps(x,c) - w eps(x); variance channels from the conditional half.
        w = 1.5
        uncond = rng.standard_normal((B, C)) * 0.8
        if case["learn_sigma"]:
            uncond[:, D:] = rng.uniform(-1, 1, (B, D))
        guided = output.copy()
        guided[:, :D] = (1 + w) * output[:, :D] - w * uncond[:, :D]
        cfg_case = dict(case, clip=None)
        _, cfg_eps, _, _, cfg_logvar = p_mean_variance(tb, guided, xt, t, cfg_case)
        eps_c = p_mean_variance(tb, output, xt, t, cfg_case)[1]
        eps_u = p_mean_variance(tb, np.concatenate([uncond[:, :D], output[:, D:]], 1) if case["learn_sigma"] else uncond, xt, t, cfg_case)[1]
        assert np.allclose(cfg_eps, (1 + w) * eps_c - w * eps_u, rtol=1e-9, atol=1e-9)
        # Classifier guidance with an analytic classifier: log p(y|x) = -|x - mu_y|^2 / 2 + const,
        # so s * grad = -s (x - mu_y).
        s = 0.7
        mu = rng.uniform(-1, 1, (B, D))
        grad = -s * (xt - mu)
        cls_mean = pmean + pvar * grad
        cls_eps = peps - col(np.sqrt(1 - tb.ab), t) * grad
        cls_x0 = x0_from(tb, cls_eps, xt, t, "eps")
        cls_post_mean, _, _ = posterior(tb, cls_x0, xt, t)
        # Training losses (Ho et al. 2020 L_simple on the prediction target; IDDPM's hybrid
        # L_simple + lambda * L_vlb with L_vlb estimated by T * L_t, lambda = 0.001).
        pred = output[:, :D]
        ab = col(tb.ab, t)
        target = {"eps": noise, "x0": x0, "v": np.sqrt(ab) * noise - np.sqrt(1 - ab) * x0}[case["prediction"]]
        loss_simple = ((pred - target) ** 2).mean(1)
        loss_vlb = vb_bits(tb, output, x0, xt, t, case)
        losses = dict(loss_simple=arr(loss_simple), loss_vlb=arr(loss_vlb))
        if case["learn_sigma"]:
            losses["loss_hybrid"] = arr(loss_simple + 0.001 * tb.T * loss_vlb)
        cases_out = dict(case, t=t.tolist(), x0=arr(x0), xt=arr(xt), noise=arr(noise), output=arr(output),
                         step_noise=arr(step_noise), cfg_scale=w, uncond=arr(uncond), cls_scale=s,
                         cls_grad=arr(grad),
                         expected=dict(
                             q_sample=arr(xt), posterior_mean=arr(m), posterior_variance=arr(v),
                             posterior_log_variance=arr(lv), x0=arr(px0), eps=arr(peps), mean=arr(pmean),
                             variance=arr(pvar), log_variance=arr(plogvar), ddpm_step=arr(ddpm),
                             ddim_eta0=arr(ddim_step(tb, px0, peps, t, 0.0, step_noise)),
                             ddim_eta1=arr(ddim_step(tb, px0, peps, t, 1.0, step_noise)),
                             vb_bits=arr(vb_bits(tb, output, x0, xt, t, case)),
                             cfg_output=arr(guided), cfg_eps=arr(cfg_eps),
                             cls_mean=arr(cls_mean), cls_eps=arr(cls_eps), cls_x0=arr(cls_x0),
                             cls_posterior_mean=arr(cls_post_mean), **losses,
                         ))
        out["process"].append(cases_out)

    x = np.array([-1.0, -0.999, -0.5, 0.0, 1 / 255, 0.5, 0.999, 1.0, 0.3, -0.7])
    means = rng.uniform(-1, 1, x.shape)
    log_scales = rng.uniform(-5, 0, x.shape)
    m2, lv1, lv2 = rng.standard_normal(x.shape), rng.uniform(-4, 1, x.shape), rng.uniform(-4, 1, x.shape)
    out["elementwise"] = dict(
        x=arr(x), means=arr(means), log_scales=arr(log_scales), mean2=arr(m2), log_var1=arr(lv1), log_var2=arr(lv2),
        normal_kl=arr(normal_kl(x, lv1, m2, lv2)), approx_cdf=arr(approx_cdf(x * 3)),
        discretized_ll=arr(discretized_ll(x, means, log_scales)), gaussian_ll=arr(gaussian_ll(x, means, log_scales)),
    )

    # DPM-Solver++(2M), Lu et al. 2022 Algorithm 2, in the paper's form with lambda = log(alpha/sigma).
    tb = Tables(cosine_betas(1000))
    for (s_idx, t_idx, prev_idx) in [(999, 899, None), (899, 799, 999), (500, 400, 600), (100, 0, 200)]:
        lam = lambda ab: math.log(math.sqrt(ab)) - math.log(math.sqrt(1 - ab))
        ab_s, ab_t = tb.ab[s_idx], tb.ab[t_idx]
        h = lam(ab_t) - lam(ab_s)
        xs, x0, x0p = rng.standard_normal(4), rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 4)
        if prev_idx is None:
            d, h_prev = x0, None
        else:
            h_prev = lam(ab_s) - lam(tb.ab[prev_idx])
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0p
        a_t, sig_t, sig_s = math.sqrt(ab_t), math.sqrt(1 - ab_t), math.sqrt(1 - ab_s)
        xt = sig_t / sig_s * xs - a_t * (math.exp(-h) - 1) * d
        out["dpm_solver"].append(dict(alpha_bar_s=ab_s, alpha_bar_t=ab_t, h_prev=h_prev, x=arr(xs), x0=arr(x0),
                                      x0_prev=arr(x0p) if prev_idx is not None else None, h=h, expected=arr(xt)))

    out["recipes"] = recipe_cases(cosine_betas(1000), rng, get_sigmas_karras, sample_heun)

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {os.path.normpath(OUT)}: {len(out['schedules'])} schedules, {len(out['respacing'])} spacings, "
          f"{len(out['process'])} process cases, {len(out['dpm_solver'])} DPM-Solver steps")


if __name__ == "__main__":
    if sys.argv[1:] == ["samplers"]:
        json.dump(sampler_cases(), sys.stdout)
    elif sys.argv[1:]:
        sys.exit(f"usage: {sys.argv[0]} [samplers]")
    else:
        main()
