#!/usr/bin/env python3
"""PyTorch side of bench/inception_throughput.sh: the same FID InceptionV3 (the module of
scripts/inception_reference.py, loading the same weights), pool3 + bias-free logits of uint8
images with pytorch-fid's preprocessing, images per second.

python bench/inception_throughput.py WEIGHTS.pth [--images N] [--batch B] [--threads T] [--size S]
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from inception_reference import FIDInceptionV3, preprocess  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    net = FIDInceptionV3()
    missing, unexpected = net.load_state_dict(torch.load(args.weights, map_location="cpu"), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    net.eval()
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (args.images, 3, args.size, args.size), generator=gen, dtype=torch.uint8)

    def extract(images):
        outs = []
        for i in range(0, images.shape[0], args.batch):
            pool = net.pool3(preprocess(images[i:i + args.batch]))
            outs.append((pool, pool @ net.fc.weight.T))
        return outs

    with torch.inference_mode():
        extract(data[: min(args.batch, args.images)])
        start = time.perf_counter()
        outs = extract(data)
        float(sum(o[0].sum() for o in outs))
        secs = time.perf_counter() - start
    print(json.dumps({"impl": "pytorch", "images": args.images, "batch": args.batch,
                      "threads": torch.get_num_threads(), "seconds": round(secs, 3),
                      "images_per_s": round(args.images / secs, 3)}))


if __name__ == "__main__":
    main()
