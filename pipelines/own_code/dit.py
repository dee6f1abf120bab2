"""A small DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers") in plain PyTorch.

The image is cut into patches (2 x 2 by default), each patch becomes a token, a few
transformer blocks of self-attention and an MLP process the tokens, and the tokens are put
back together as an image of the input's shape. The diffusion time and the class condition
every block through adaLN-Zero: a LayerNorm without its own scale and shift, whose shift,
scale and residual gate are computed from the conditioning vector by a linear layer that
starts at zero, so every block starts as the identity.

difflow calls `forward(x, t, y)`: x is the noisy batch [B, C, H, W], t the timesteps [B]
and y the class labels [B] (the label `classes` is the null class of classifier-free
guidance), and expects the predicted noise, of x's shape (docs/own_code.md).
"""

import math

import torch
from torch import nn
import torch.nn.functional as F


def timestep_embedding(t, dim, max_period=10000.0):
    """Sinusoidal features of the (possibly fractional) timesteps t: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x, shift, scale):
    """adaLN: the normalised tokens x [B, N, W] shifted and scaled per item."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """Self-attention and an MLP, each with an adaLN-Zero shift, scale and gate."""

    def __init__(self, width, heads, mlp_ratio=4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * width, width)
        )
        self.ada = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def attention(self, x):
        b, n, w = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, w))

    def forward(self, x, c):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attention(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """A diffusion transformer for [B, channels, size, size] images and `classes` labels."""

    def __init__(self, size=16, channels=1, patch=2, width=128, depth=4, heads=4, classes=10):
        super().__init__()
        if size % patch:
            raise ValueError(f"the image size {size} is not a multiple of the patch size {patch}")
        if width % heads:
            raise ValueError(f"the width {width} is not a multiple of the number of heads {heads}")
        self.channels, self.patch, self.grid = channels, patch, size // patch
        self.width, self.classes = width, classes
        self.embed = nn.Linear(channels * patch * patch, width)
        self.position = nn.Parameter(torch.randn(1, self.grid * self.grid, width) * 0.02)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        # One embedding per class and one more for the null class (label == classes).
        self.label = nn.Embedding(classes + 1, width) if classes > 0 else None
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, channels * patch * patch)
        for layer in (self.final_ada, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def patchify(self, x):
        """[B, C, H, W] -> [B, N, C * p * p], the patches in row-major order."""
        b, c, p, g = x.shape[0], self.channels, self.patch, self.grid
        return x.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)

    def unpatchify(self, tokens):
        """[B, N, C * p * p] -> [B, C, H, W], the inverse of `patchify`."""
        b, c, p, g = tokens.shape[0], self.channels, self.patch, self.grid
        return tokens.reshape(b, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, g * p, g * p)

    def forward(self, x, t, y=None):
        c = self.time(timestep_embedding(t, self.width))
        if self.label is not None:
            if y is None:
                y = torch.full_like(t, self.classes, dtype=torch.long)
            c = c + self.label(y)
        h = self.embed(self.patchify(x)) + self.position
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=-1)
        return self.unpatchify(self.out(modulate(self.final_norm(h), shift, scale)))
