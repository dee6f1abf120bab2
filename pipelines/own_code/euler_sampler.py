"""A sampler of your own, run by difflow as a `script` stage (docs/own_code.md).

It loads the `python` network a `train` stage trained (the class named in the stage's
model config, built with its `args`, its EMA weights from the stage's entry) and draws
samples with Euler steps of the probability-flow ODE in σ = sqrt((1 - ᾱ) / ᾱ)
(Karras et al. 2022, as k-diffusion's `sample_euler`), with classifier-free guidance.
It writes samples.safetensors in the sample format, so a `metrics` stage judges it as it
judges a `sample` stage.

Inputs: `model` (a train stage whose model is `python` with `prediction = "eps"`).
Outputs: samples.safetensors. The settings are the constants below: editing them changes
the script, hence the stage's key, and reruns it.
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


@torch.no_grad()
def euler(net, shape, labels, null, alpha_bars, generator, device):
    """Euler steps of dx/dσ = ε̂ from σ_max to 0 on STEPS timesteps spaced evenly."""
    T = alpha_bars.shape[0]
    timesteps = torch.linspace(T - 1, 0, STEPS, dtype=torch.float64).round().long()
    sigmas = ((1 - alpha_bars[timesteps]) / alpha_bars[timesteps]).sqrt().tolist() + [0.0]
    x = torch.randn(shape, generator=generator, dtype=torch.float32).to(device) * sigmas[0]
    y = labels.to(device)
    y_null = torch.full_like(y, null)
    for i, t in enumerate(timesteps.tolist()):
        sigma = sigmas[i]
        x_in = x / math.sqrt(1 + sigma**2)  # the VP input x_t = sqrt(ᾱ) · x
        tt = torch.full((shape[0],), t, dtype=torch.int64, device=device)
        eps = net(x_in, tt, y)
        if GUIDANCE != 1.0:
            eps_null = net(x_in, tt, y_null)
            eps = eps_null + GUIDANCE * (eps - eps_null)
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
    generator = torch.Generator().manual_seed(SEED)
    labels = torch.arange(COUNT) % max(classes, 1)
    images = []
    for start in range(0, COUNT, BATCH):
        y = labels[start : start + BATCH]
        x0 = euler(net, [len(y), *shape], y, classes, alpha_bars, generator, device)
        images.append(((x0.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    save_file(
        {"images": torch.cat(images).contiguous(), "labels": labels.to(torch.int64)},
        os.path.join(job["out_dir"], "samples.safetensors"),
        metadata={"classes": str(max(classes, 1))},
    )


if __name__ == "__main__":
    main()
