"""Tiny denoisers written in Python for the engine's tests of `python` models."""

import math

import torch
import torch.nn as nn


class ToyNet(nn.Module):
    """An MLP on 2-D points with a sinusoidal embedding of the timestep (and of the label)."""

    def __init__(self, dim=2, hidden=64, classes=0):
        super().__init__()
        self.hidden = hidden
        self.time = nn.Linear(hidden, hidden)
        self.label = nn.Embedding(classes + 1, hidden) if classes else None
        self.inp = nn.Linear(dim, hidden)
        self.body = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, x, t, y=None):
        half = self.hidden // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
        args = t.float()[:, None] * freqs[None]
        emb = self.time(torch.cat([args.cos(), args.sin()], 1))
        if self.label is not None:
            emb = emb + self.label(y)
        return self.body(self.inp(x * self.scale) + emb)


class WrongShape(ToyNet):
    def forward(self, x, t, y=None):
        return super().forward(x, t, y)[:, :1]


class Raises(ToyNet):
    def forward(self, x, t, y=None):
        raise ValueError("no forward today")


class BadInit(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.layer = nn.Linear(width, width)
        raise RuntimeError(f"width {width} is not supported")


class WithDropout(ToyNet):
    def __init__(self, dim=2, hidden=64, classes=0):
        super().__init__(dim, hidden, classes)
        self.body.insert(1, nn.Dropout(0.1))
