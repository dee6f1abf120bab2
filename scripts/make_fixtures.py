#!/usr/bin/env python3
"""Tiny CIFAR-10 python-version fixtures for the engine's data tests.

    python scripts/make_fixtures.py cifar_pickle FOLDER [--per-batch N]

writes FOLDER/cifar-10-batches-py/{data_batch_1..5,test_batch} exactly as the official
`cifar-10-python.tar.gz` lays them out (pickled dicts with b'batch_label', b'labels',
b'data' as a uint8 numpy array [N, 3072], b'filenames'; pickle protocol 2, as the
official files), and FOLDER/cifar-10-python.tar.gz holding that folder.

Pixel j of image i in batch b (1..5, test = 6) is (7·i + 3·j + 11·b) mod 256 and its label
is (i + b) mod 10, so a test can check every value without storing it.
"""

import argparse
import os
import pickle
import tarfile

import numpy as np


def batch(b, n):
    i = np.arange(n)[:, None]
    j = np.arange(3072)[None, :]
    data = ((7 * i + 3 * j + 11 * b) % 256).astype(np.uint8)
    labels = [int((k + b) % 10) for k in range(n)]
    return {
        b"batch_label": f"fixture batch {b}".encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{b}_{k}.png".encode() for k in range(n)],
    }


def cifar_pickle(folder, per_batch):
    inner = os.path.join(folder, "cifar-10-batches-py")
    os.makedirs(inner, exist_ok=True)
    names = [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names, start=1):
        with open(os.path.join(inner, name), "wb") as f:
            pickle.dump(batch(b, per_batch), f, protocol=2)
    with tarfile.open(os.path.join(folder, "cifar-10-python.tar.gz"), "w:gz") as tar:
        tar.add(inner, arcname="cifar-10-batches-py")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["cifar_pickle"])
    p.add_argument("folder")
    p.add_argument("--per-batch", type=int, default=20)
    args = p.parse_args()
    cifar_pickle(args.folder, args.per_batch)


if __name__ == "__main__":
    main()
