"""Reference values for the train stage's recipe keys, from diffusers and PyTorch themselves
where they implement the method and from the papers' formulas in torch float64 where they
do not: Min-SNR-γ loss weights (diffusers' `training_utils.compute_snr` and the weighting of
examples/text_to_image/train_text_to_image.py), learning-rate schedules (diffusers'
`get_cosine_schedule_with_warmup` / `get_linear_schedule_with_warmup`, torch's
`CosineAnnealingLR` / `LinearLR` for a floor), the EMA's warm-up (diffusers' `EMAModel`), and
EDM (Karras et al. 2022; the formulas of NVlabs/edm's `EDMPrecond` and `EDMLoss`, sampled by
k-diffusion's `sample_heun`, as reference_numbers.py writes it).
reference_numbers.py writes them into numbers.json under "recipes"; engine/tests/recipes.rs
compares against them to 1e-5.
"""
import torch
from diffusers import DDPMScheduler
from diffusers.optimization import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup
from diffusers.training_utils import EMAModel, compute_snr


def min_snr_cases(betas, rng):
    """Per-item weights and weighted losses at a few timesteps, for each prediction type."""
    scheduler = DDPMScheduler(num_train_timesteps=len(betas), trained_betas=list(betas))
    t = torch.tensor([0, 1, 50, 300, 700, 999])
    gamma = 5.0
    snr = compute_snr(scheduler, t)
    B, D = len(t), 4
    x0 = torch.tensor(rng.uniform(-1, 1, (B, D)), dtype=torch.float64)
    noise = torch.tensor(rng.standard_normal((B, D)), dtype=torch.float64)
    output = torch.tensor(rng.standard_normal((B, D)) * 0.8, dtype=torch.float64)
    ab = torch.tensor(scheduler.alphas_cumprod.numpy(), dtype=torch.float64)[t][:, None]
    cases = []
    for prediction, divisor in (("eps", snr), ("v", snr + 1), ("x0", None)):
        # train_text_to_image.py: min(SNR, γ), divided by SNR for ε and by SNR + 1 for v.
        weights = torch.stack([snr, gamma * torch.ones_like(t)], dim=1).min(dim=1)[0]
        if divisor is not None:
            weights = weights / divisor
        target = {"eps": noise, "x0": x0, "v": ab.sqrt() * noise - (1 - ab).sqrt() * x0}[prediction]
        mse = torch.nn.functional.mse_loss(output, target, reduction="none").mean(dim=1)
        cases.append(dict(prediction=prediction, weights=weights.double().tolist(),
                          loss=(mse * weights.double()).tolist()))
    return dict(gamma=gamma, t=t.tolist(), x0=x0.tolist(), noise=noise.tolist(), output=output.tolist(),
                cases=cases)


def lr_of(scheduler_of, steps):
    """The learning rate each update 0 … steps − 1 uses, from a torch LR scheduler."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = scheduler_of(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def lr_cases():
    """difflow's warm-up is lr·(s + 1)/W at update s (its own convention, kept); from update W
    on its decay is diffusers' schedule at the same update, or torch's with a floor."""
    W, S = 10, 60
    warm = [(s + 1) / W for s in range(W)]
    cases = []
    for name, of in (("cosine", get_cosine_schedule_with_warmup), ("linear", get_linear_schedule_with_warmup)):
        rates = lr_of(lambda o: of(o, num_warmup_steps=W, num_training_steps=S), S)
        cases.append(dict(schedule=name, floor=0.0, expected=warm + rates[W:]))
    floor = 0.1
    decay = S - W
    cosine = lr_of(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=decay, eta_min=floor), decay)
    linear = lr_of(lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, floor, total_iters=decay), decay)
    cases.append(dict(schedule="cosine", floor=floor, expected=warm + cosine))
    cases.append(dict(schedule="linear", floor=floor, expected=warm + linear))
    return dict(lr=1.0, warmup=W, steps=S, cases=cases)


def ema_cases():
    """diffusers' EMAModel decay at its optimisation step n = s + 1 for update s (no power
    warm-up: the (1 + n)/(10 + n) rule). Its first update copies the weights (decay 0);
    difflow's uses 0.1 there, so the first update is left out."""
    ema = EMAModel([torch.nn.Parameter(torch.zeros(1))], decay=0.999, use_ema_warmup=False)
    steps = list(range(1, 40)) + [100, 5000, 20000]
    return dict(ema=0.999, steps=steps, expected=[ema.get_decay(s + 1) for s in steps])


def edm_precond(net, sigma_data):
    """NVlabs/edm's EDMPrecond around `net(x_in, c_noise, y)`: D(x; σ)."""
    def denoiser(x, sigma, y=None):
        c_skip = sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)
        c_out = sigma * sigma_data / (sigma ** 2 + sigma_data ** 2).sqrt()
        c_in = 1 / (sigma_data ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip * x + c_out * net(c_in * x, c_noise.flatten(), y)
    return denoiser


def edm_cases(rng, get_sigmas_karras, sample_heun):
    """EDM's training loss (EDMLoss: λ(σ)‖D(x₀ + σn; σ) − x₀‖², per item mean over the
    dimensions) with a given net output, and a Heun chain of an EDM net with CFG."""
    sigma_data, p_mean, p_std = 0.5, -1.2, 1.2
    B, D = 5, 3
    t64 = lambda a: torch.tensor(a, dtype=torch.float64)
    x0, noise, normal = t64(rng.uniform(-1, 1, (B, D))), t64(rng.standard_normal((B, D))), t64(rng.standard_normal(B))
    output = t64(rng.standard_normal((B, D)))
    sigma = (normal * p_std + p_mean).exp()[:, None]
    weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    seen = {}

    def net(x_in, c_noise, y):
        seen.update(x_in=x_in, c_noise=c_noise)
        return output
    d = edm_precond(net, sigma_data)(x0 + noise * sigma, sigma)
    loss = (weight * (d - x0) ** 2).mean(1)
    training = dict(x0=x0.tolist(), noise=noise.tolist(), normal=normal.tolist(), output=output.tolist(),
                    input=seen["x_in"].tolist(), c_noise=seen["c_noise"].tolist(), loss=loss.tolist())

    # A toy net F(x_in, c_noise, y) and classifier-free guidance on F (linear in D).
    toy = lambda x_in, c, y: torch.tanh(x_in) * (0.5 + c[:, None] / 4) + (0 if y is None else 0.1 * y[:, None])
    y = torch.tensor([0.0, 2.0])
    null = torch.tensor([3.0, 3.0])
    w = 2.0
    cfg = lambda x_in, c, _: (1 + w) * toy(x_in, c, y) - w * toy(x_in, c, null)
    x_init = t64(rng.standard_normal((2, 2)))
    sigmas = get_sigmas_karras(4, 0.002, 80.0)
    chains = []
    for guidance, f in (("none", lambda x_in, c, _: toy(x_in, c, None)), ("cfg", cfg)):
        denoiser = edm_precond(f, sigma_data)
        model = lambda x, s: denoiser(t64(x), torch.full((x.shape[0], 1), float(s), dtype=torch.float64)).numpy()
        chains.append(dict(guidance=guidance, expected=sample_heun(model, x_init.numpy() * sigmas[0], sigmas).tolist()))
    return dict(sigma_data=sigma_data, p_mean=p_mean, p_std=p_std, training=training,
                x_init=x_init.tolist(), labels=y.tolist(), cfg_scale=w, chains=chains)


def recipe_cases(betas, rng, get_sigmas_karras, sample_heun):
    return dict(min_snr=min_snr_cases(betas, rng), lr=lr_cases(), ema=ema_cases(),
                edm=edm_cases(rng, get_sigmas_karras, sample_heun))
