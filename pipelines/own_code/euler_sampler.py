"""A sampler of your own, run by difflow as a `script` stage (docs/own_code.md).

It loads the `python` network a `train` stage trained (the class named in the stage's
model config, built with its `args`, its EMA weights from the stage's entry) and draws
samples with Euler steps of the probability-flow ODE in σ = sqrt((1 - ᾱ) / ᾱ)
(Karras et al. 2022, as k-diffusion's `sample_euler`), with classifier-free guidance.
It writes samples.safetensors in the sample format, so a `metrics` stage judges it as it
judges a `sample` stage.

Inputs: `model` (a train stage whose model is `python` with `prediction = "eps"`), and
optionally `like` (a `sample` stage whose count, seed, steps and classifier-free guidance
scale it copies, so that the two samplers are compared at one budget). Without `like` the
constants below hold. Guidance follows difflow's `cfg`: ε̃ = (1 + w) ε(x, y) − w ε(x).
Outputs: samples.safetensors. Editing the script changes the stage's key and reruns it.
"""

import importlib.util
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file, save_file

STEPS = 50
GUIDANCE = 2.0
COUNT = 500
SEED = 1
BATCH = 250
# Karras et al.'s σ ladder: a cosine schedule's own largest σ is in the hundreds, and
# Euler steps from there (or timesteps spaced evenly) waste most of the budget.
SIGMA_MAX = 80.0
RHO = 7.0


def settings(job):
    """(steps, guidance scale, count, seed): the `like` stage's, else the constants."""
    like = job["inputs"].get("like")
    if like is None:
        return STEPS, GUIDANCE, COUNT, SEED
    if like["kind"] != "sample":
        raise SystemExit(f"`like` must be a sample stage, not a {like['kind']} stage")
    p = like["params"]
    guidance = p.get("guidance") or {}
    scale = guidance.get("scale", 0.0) if guidance.get("variant") == "cfg" else 0.0
    return p["sampler"].get("steps", STEPS), scale, p["count"], p["seed"]


def alpha_bar(schedule):
    """ᾱ_t of the training schedule, float64 [T] (linear or cosine, as difflow computes them)."""
    steps, variant = schedule["steps"], schedule["variant"]
    if schedule.get("zero_terminal_snr"):
        raise SystemExit("this sampler does not handle zero_terminal_snr schedules (σ_max is infinite)")
    if variant == "linear":
        scale = 1000.0 / steps if schedule["scale_with_steps"] else 1.0
        betas = torch.linspace(scale * schedule["start"], scale * schedule["end"], steps, dtype=torch.float64)
    elif variant == "cosine":
        s, max_beta = schedule["s"], schedule["max_beta"]

        def f(t):
            return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2

        betas = torch.tensor(
            [min(1 - f((i + 1) / steps) / f(i / steps), max_beta) for i in range(steps)], dtype=torch.float64
        )
    else:
        raise SystemExit(f"this sampler knows linear and cosine schedules, not {variant}")
    return torch.cumprod(1 - betas, dim=0)


def load_net(model, weights, device):
    """The user's module, built as CLASS(**args) from its file, with the given weights."""
    if model["variant"] != "python":
        raise SystemExit(f"the training stage's model is `{model['variant']}`, not a python model")
    if model["prediction"] != "eps" or model["learn_sigma"]:
        raise SystemExit("this sampler expects an ε-predicting net without learn_sigma")
    folder = os.path.dirname(model["file"])
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("user_net", model["file"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = getattr(module, model["class"])(**model["args"])
    net.load_state_dict(load_file(weights))
    return net.to(device).eval()


def karras_sigmas(alpha_bars, steps):
    """`steps` σs from SIGMA_MAX down to the schedule's smallest, σ^(1/ρ) evenly spaced
    (Karras et al. 2022), each with the timestep whose σ is nearest in log σ (the net
    only knows the timesteps it was trained on)."""
    table = ((1 - alpha_bars) / alpha_bars).sqrt()
    lo, hi = table[0].item(), min(SIGMA_MAX, table[-1].item())
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    sigmas = (hi ** (1 / RHO) + ramp * (lo ** (1 / RHO) - hi ** (1 / RHO))) ** RHO
    timesteps = (table.log()[None, :] - sigmas.log()[:, None]).abs().argmin(dim=1)
    return sigmas.tolist() + [0.0], timesteps.tolist()


@torch.no_grad()
def euler(net, shape, labels, null, alpha_bars, generator, device, steps, guidance):
    """Euler steps of dx/dσ = ε̂ from σ_max to 0 on `steps` Karras σ steps."""
    sigmas, timesteps = karras_sigmas(alpha_bars, steps)
    x = torch.randn(shape, generator=generator, dtype=torch.float32).to(device) * sigmas[0]
    y = labels.to(device)
    y_null = torch.full_like(y, null)
    for i, t in enumerate(timesteps):
        sigma = sigmas[i]
        x_in = x / math.sqrt(1 + sigma**2)  # the VP input x_t = sqrt(ᾱ) · x
        tt = torch.full((shape[0],), t, dtype=torch.int64, device=device)
        eps = net(x_in, tt, y)
        if guidance != 0.0:
            eps_null = net(x_in, tt, y_null)
            eps = eps + guidance * (eps - eps_null)
        x = x + (sigmas[i + 1] - sigma) * eps
    return x


def main():
    job = json.load(open(os.environ["DIFFLOW_JOB"]))
    trained = job["inputs"]["model"]
    if trained["kind"] != "train":
        raise SystemExit(f"`model` must be a train stage, not a {trained['kind']} stage")
    params, files = trained["params"], trained["files"]
    device = "cuda" if job["device"] != "cpu" and torch.cuda.is_available() else "cpu"
    model = params["model"]
    net = load_net(model, files["ema.safetensors"], device)
    meta = json.load(open(files["meta.json"]))
    shape = meta["data"]["shape"]
    classes = model["classes"]
    alpha_bars = alpha_bar(params["schedule"])
    steps, guidance, count, seed = settings(job)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % max(classes, 1)
    images = []
    for start in range(0, count, BATCH):
        y = labels[start : start + BATCH]
        x0 = euler(net, [len(y), *shape], y, classes, alpha_bars, generator, device, steps, guidance)
        images.append(((x0.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    save_file(
        {"images": torch.cat(images).contiguous(), "labels": labels.to(torch.int64)},
        os.path.join(job["out_dir"], "samples.safetensors"),
        metadata={"classes": str(max(classes, 1))},
    )


if __name__ == "__main__":
    main()
