#!/usr/bin/env python3
"""Reference for difflow's InceptionV3 port (FID variant, `pt_inception-2015-12-05` layout).

The real weights cannot be downloaded here, so this script builds the same network in plain
PyTorch (the structure of pytorch-fid's FIDInceptionV3, written from scratch: no torchvision)
with seeded random weights whose BatchNorm running statistics are calibrated on a batch of
images, so that activations neither vanish nor explode through the 94 layers. It writes:

  OUT/inception.pth              the state dict, torch.save zip format (what torch >= 1.6 writes)
  OUT/inception_legacy.pth       the same, the pre-1.6 format (how the published file was saved)
  OUT/inception.safetensors      the same, safetensors
  OUT/reference.safetensors      fixed uint8 images `images_a` [6,3,32,32] and `images_b`
                                 [6,1,28,28] (gray), their pool3 `features_a`/`features_b`
                                 [6,2048] and bias-free logits `logits_a`/`logits_b` [6,1008]
                                 (float32), and `fid` (float64 [1]) between the two sets
  OUT/reference.json             parameter count, fid, and the shapes above

Run: python scripts/inception_reference.py OUT [--seed 0]
The Rust test `engine/tests/inception_reference.rs` runs it into a temporary folder.
"""

import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

BN_EPS = 0.001


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BlockA(nn.Module):  # FIDInceptionA: avg-pool without counting the padding
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b5, b3, bp], 1)


class BlockB(nn.Module):  # Mixed_6a
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):  # FIDInceptionC
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b7, bd, bp], 1)


class BlockD(nn.Module):  # Mixed_7a
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # FIDInceptionE_1 (avg pool, no padding counted) / E_2 (max pool)
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def pool3(self, x):
        """x: float images in [-1, 1], [N, 3, 299, 299] -> [N, 2048]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def preprocess(images_uint8):
    """uint8 [N, C, H, W] (C = 1 or 3) -> float [N, 3, 299, 299] in [-1, 1], as pytorch-fid."""
    x = images_uint8.float() / 255.0
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


def seeded_inception(seed):
    torch.manual_seed(seed)
    net = FIDInceptionV3()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    nn.init.normal_(net.fc.weight, std=0.05)
    nn.init.uniform_(net.fc.bias, -1.0, 1.0)
    # Calibrate the running statistics on smooth random images: one forward pass in training
    # mode with momentum 1 makes every BN's running mean/var its input's batch statistics.
    calibration = smooth_images(torch.Generator().manual_seed(seed + 1), 8, 3, 40)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 1.0
    net.train()
    with torch.no_grad():
        net.pool3(preprocess(calibration))
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    return net.eval()


def smooth_images(gen, n, channels, size):
    """Natural-ish uint8 images: low-frequency noise upsampled, plus some texture."""
    coarse = torch.rand(n, channels, 5, 5, generator=gen)
    x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    x = x + 0.15 * torch.rand(n, channels, size, size, generator=gen)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """float64; tr sqrt(S1 S2) from the eigenvalues of the symmetric sqrt(S1) S2 sqrt(S1)."""
    w, v = np.linalg.eigh(sigma1)
    sqrt1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = sqrt1 @ sigma2 @ sqrt1
    eig = np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eig).sum())


def stats(features):
    f = features.astype(np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    net = seeded_inception(args.seed)
    full_state = net.state_dict()
    # BN's num_batches_tracked counters play no part in inference and the loader ignores
    # them; the legacy file keeps them (to test that), the others leave them out.
    state = {k: v.contiguous() for k, v in full_state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, os.path.join(args.out, "inception.pth"))
    torch.save(full_state, os.path.join(args.out, "inception_legacy.pth"), _use_new_zipfile_serialization=False)
    save_file(state, os.path.join(args.out, "inception.safetensors"))
    param_count = sum(p.numel() for p in net.parameters())

    gen = torch.Generator().manual_seed(args.seed + 2)
    images_a = smooth_images(gen, 6, 3, 32)
    images_b = smooth_images(gen, 6, 1, 28)
    with torch.no_grad():
        features_a = net.pool3(preprocess(images_a))
        features_b = net.pool3(preprocess(images_b))
    # IS uses the logits without the fc bias (torch-fidelity's logits_unbiased).
    logits_a = features_a @ net.fc.weight.T
    logits_b = features_b @ net.fc.weight.T
    fid = frechet_distance(*stats(features_a.numpy()), *stats(features_b.numpy()))

    save_file(
        {
            "images_a": images_a,
            "images_b": images_b,
            "features_a": features_a.contiguous(),
            "features_b": features_b.contiguous(),
            "logits_a": logits_a.contiguous(),
            "logits_b": logits_b.contiguous(),
            "fid": torch.tensor([fid], dtype=torch.float64),
        },
        os.path.join(args.out, "reference.safetensors"),
    )
    summary = {
        "param_count": param_count,
        "fid": fid,
        "feature_mean": float(features_a.mean()),
        "feature_std": float(features_a.std()),
        "state_dict_entries": len(state),
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
