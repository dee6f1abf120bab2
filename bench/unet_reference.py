"""PyTorch eager reference of difflow's UNet (and its speed benchmark).

The architecture is the UNet of Ho et al. 2020 with the IDDPM options, written the way
improved-diffusion's `unet.py` writes it, with the same parameter names and shapes as
difflow's `engine/src/models/unet.rs` (so `state_dict()` keys match the safetensors that
difflow writes). Used for

* `--count`: print the parameter count of a configuration (the Ho et al. CIFAR-10 net is
  35,746,307), and with `--names FILE` compare names/shapes against a list dumped by
  difflow;
* `--bench`: time (a) a training step (AdamW, batch B) and (b) DDIM sampling with
  classifier-free guidance (one batched forward for both halves), with the same shapes
  and thread count that `difflow-bench` uses. Prints one JSON line.
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(channels):
    groups = 32
    while channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def zero(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, ch, emb_ch, dropout, out_ch, scale_shift):
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        if emb_ch:
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, 2 * out_ch if scale_shift else out_ch))
        else:
            self.emb_layers = None
        self.out_layers = nn.Sequential(
            group_norm(out_ch), nn.SiLU(), nn.Dropout(dropout), zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        )
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        if self.emb_layers is None:
            h = self.out_layers(h)
        else:
            e = self.emb_layers(emb)[:, :, None, None]
            if self.scale_shift:
                scale, shift = e.chunk(2, dim=1)
                h = self.out_layers[0](h) * (1 + scale) + shift
                h = self.out_layers[1:](h)
            else:
                h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    def __init__(self, ch, heads):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = zero(nn.Conv1d(ch, ch, 1))

    def forward(self, x):
        b, c, hh, ww = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * c // self.heads, -1)
        q, k, v = qkv.chunk(3, dim=1)
        # Same kernel as difflow: SDPA's default scale 1/sqrt(d) = improved-diffusion's (1/d^(1/4))^2.
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = h.transpose(1, 2).reshape(b, c, -1)
        return (x + self.proj_out(h)).reshape(b, c, hh, ww)


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Seq(nn.ModuleList):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    def __init__(self, in_ch=3, size=32, channels=128, mults=(1, 2, 2, 2), res_blocks=2, attention=(16,), heads=1,
                 dropout=0.1, scale_shift=False, classes=0, learn_sigma=False):
        super().__init__()
        emb = 4 * channels
        self.channels = channels
        self.time_embed = nn.Sequential(nn.Linear(channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        # classes + 1 rows: the last one is the null class of classifier-free guidance.
        self.label_emb = nn.Embedding(classes + 1, emb) if classes else None
        self.input_blocks = nn.ModuleList([Seq([nn.Conv2d(in_ch, channels, 3, padding=1)])])
        skip = [channels]
        ch, res = channels, size
        for level, mult in enumerate(mults):
            for _ in range(res_blocks):
                layers = [ResBlock(ch, emb, dropout, mult * channels, scale_shift)]
                ch = mult * channels
                if res in attention:
                    layers.append(AttentionBlock(ch, heads))
                self.input_blocks.append(Seq(layers))
                skip.append(ch)
            if level != len(mults) - 1:
                self.input_blocks.append(Seq([Downsample(ch)]))
                skip.append(ch)
                res //= 2
        self.middle_block = Seq([ResBlock(ch, emb, dropout, ch, scale_shift), AttentionBlock(ch, heads),
                                 ResBlock(ch, emb, dropout, ch, scale_shift)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for i in range(res_blocks + 1):
                layers = [ResBlock(ch + skip.pop(), emb, dropout, mult * channels, scale_shift)]
                ch = mult * channels
                if res in attention:
                    layers.append(AttentionBlock(ch, heads))
                if level and i == res_blocks:
                    layers.append(Upsample(ch))
                    res *= 2
                self.output_blocks.append(Seq(layers))
        out_ch = 2 * in_ch if learn_sigma else in_ch
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero(nn.Conv2d(ch, out_ch, 3, padding=1)))

    def forward(self, x, t, y=None):
        emb = self.time_embed(timestep_embedding(t, self.channels))
        if self.label_emb is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def count(model):
    return sum(p.numel() for p in model.parameters())


def cosine_alpha_bar(steps):
    f = lambda t: math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - f(i + 1) / f(i), 0.999) for i in range(steps)]
    ab, out = 1.0, []
    for b in betas:
        ab *= 1 - b
        out.append(ab)
    return torch.tensor(out, dtype=torch.float64)


def bench(cfg, args):
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = UNet(**cfg)
    classes = cfg["classes"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    data = torch.randint(0, 256, (1024, cfg["in_ch"], cfg["size"], cfg["size"]), dtype=torch.uint8)
    labels = torch.randint(0, max(classes, 1), (1024,))
    ab = cosine_alpha_bar(1000).float()

    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    step_no = [0]

    # What difflow's train stage does per step: a batch, label dropout (uncond_p = 0.1),
    # q_sample, forward, eps-MSE, backward, gradient clipping at 1, AdamW, warmed-up EMA.
    def train_step():
        index = torch.randint(0, data.shape[0], (args.batch,))
        x0 = data[index].float() / 127.5 - 1
        yb = None
        if classes:
            yb = labels[index]
            yb = torch.where(torch.rand(args.batch) < 0.1, torch.full_like(yb, classes), yb)
        t = torch.randint(0, 1000, (args.batch,))
        noise = torch.randn_like(x0)
        a = ab[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(xt, t, yb), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        n = step_no[0]
        decay = min(0.999, (1 + n) / (10 + n))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.mul_(decay).add_(p, alpha=1 - decay)
        step_no[0] += 1

    train_ms = float("nan")
    if not args.sample_only:
        model.train()
        for _ in range(args.warmup):
            train_step()
        start = time.perf_counter()
        for _ in range(args.train_steps):
            train_step()
        train_ms = (time.perf_counter() - start) / args.train_steps * 1000

    # DDIM (eta = 0) with CFG: both halves in one forward of batch 2n.
    model.eval()
    n = args.sample_count
    ts = [int(round(i * 999 / (args.ddim_steps - 1))) for i in range(args.ddim_steps)][::-1]

    def sample():
        x = torch.randn(n, cfg["in_ch"], cfg["size"], cfg["size"])
        labels = torch.arange(n) % classes
        null = torch.full((n,), classes)
        with torch.no_grad():
            for i, t in enumerate(ts):
                out = model(torch.cat([x, x]), torch.full((2 * n,), t), torch.cat([labels, null]))
                eps_c, eps_u = out[:n, : cfg["in_ch"]], out[n:, : cfg["in_ch"]]
                eps = (1 + args.scale) * eps_c - args.scale * eps_u
                a_t = ab[t]
                a_prev = ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
                x0_hat = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
                x = a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps
        return x

    sample()  # warm-up
    start = time.perf_counter()
    sample()
    sample_s = time.perf_counter() - start
    return {"params": count(model), "train_step_ms": train_ms, "ddim_cfg_s": sample_s}


def check(cfg, folder):
    """Loads difflow's weights (strict: every name and shape must match) and evaluates the
    forward pass on difflow's inputs, for the engine's cross-check test."""
    from safetensors.torch import load_file, save_file

    model = UNet(**cfg)
    model.load_state_dict(load_file(f"{folder}/weights.safetensors"), strict=True)
    model.eval()
    inputs = load_file(f"{folder}/inputs.safetensors")
    with torch.no_grad():
        out = model(inputs["x"], inputs["t"], inputs.get("y"))
    save_file({"out": out.contiguous()}, f"{folder}/outputs.safetensors")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default='{}', help="JSON overrides of the UNet configuration")
    p.add_argument("--count", action="store_true")
    p.add_argument("--names", help="a file of 'name shape' lines dumped by difflow to compare against")
    p.add_argument("--check", help="a folder with weights.safetensors and inputs.safetensors written by difflow's "
                   "test: run the same forward and write outputs.safetensors there")
    p.add_argument("--bench", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--sample-count", type=int, default=16)
    p.add_argument("--ddim-steps", type=int, default=10)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--sample-only", type=lambda v: v == "true", default=False)
    args = p.parse_args()
    cfg = dict(in_ch=3, size=32, channels=128, mults=(1, 2, 2, 2), res_blocks=2, attention=(16,), heads=1,
               dropout=0.1, scale_shift=False, classes=0, learn_sigma=False)
    cfg.update(json.loads(args.config))
    if args.count or args.names:
        model = UNet(**cfg)
        print(json.dumps({"params": count(model)}))
        if args.names:
            ours = {k: list(v.shape) for k, v in model.state_dict().items()}
            theirs = {}
            for line in open(args.names):
                name, shape = line.split(maxsplit=1)
                theirs[name] = json.loads(shape)
            if ours != theirs:
                only_ours = sorted(set(ours) - set(theirs))
                only_theirs = sorted(set(theirs) - set(ours))
                diff = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
                raise SystemExit(f"mismatch: only here {only_ours[:5]}, only in difflow {only_theirs[:5]}, shapes {diff[:5]}")
            print(f"names and shapes match ({len(ours)} tensors)")
    if args.check:
        check(cfg, args.check)
    if args.bench:
        print(json.dumps(bench(cfg, args)))


if __name__ == "__main__":
    main()
