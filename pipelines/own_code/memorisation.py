"""A memorisation check, run by difflow as a `script` stage (docs/own_code.md).

For every sample, the distance to its nearest training image: a model that copies its
training set puts many samples right next to a training image. The distance is the RMS
pixel difference in [0, 1] units (0: an exact copy, about 0.3: unrelated digits). For
scale, the same is measured for held-out images (`reference`, the test split), which the
model never saw: samples much closer to the training set than held-out images are suspect.

Inputs (by their keys in the stage's `inputs`): `samples` (a sample stage, or a script
that writes samples.safetensors), `train` (the training dataset) and optionally
`reference` (held-out data). Outputs: metrics.json, histogram.csv and histogram.svg.
"""

import json
import os

import torch
from safetensors.torch import load_file

# A sample this close to a training image (RMS, [0, 1] units) counts as a near copy.
NEAR_COPY = 0.05
# Histogram bins over [0, MAX_DISTANCE).
BINS = 30
MAX_DISTANCE = 0.8
# Training images compared at once (bounds memory: CHUNK x samples distances).
CHUNK = 8192


def images(entry):
    """An entry's images as float32 [N, D] in [0, 1], from its data or samples file."""
    files = entry["files"]
    name = "samples.safetensors" if "samples.safetensors" in files else "data.safetensors"
    tensors = load_file(files[name])
    if "images" not in tensors:
        raise SystemExit(f"`{entry['stage']}` holds points, not images: the memorisation check needs images")
    x = tensors["images"]
    return x.reshape(x.shape[0], -1).float() / 255.0


def nearest_distances(queries, train):
    """For each query, the RMS distance to its nearest training image."""
    best = torch.full((queries.shape[0],), float("inf"))
    for start in range(0, train.shape[0], CHUNK):
        d = torch.cdist(queries, train[start : start + CHUNK])
        best = torch.minimum(best, d.min(dim=1).values)
    return best / queries.shape[1] ** 0.5


def histogram_svg(counts, reference_counts):
    """Bars of the samples' distances (blue), the held-out ones' as an outline (grey)."""
    width, height, pad = 480, 240, 30
    top = max(max(counts), max(reference_counts or [0]), 1)
    bar = (width - 2 * pad) / len(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">']
    parts.append('<rect width="100%" height="100%" fill="white"/>')
    for i, c in enumerate(counts):
        h = (height - 2 * pad) * c / top
        parts.append(
            f'<rect x="{pad + i * bar:.1f}" y="{height - pad - h:.1f}" width="{bar - 1:.1f}" '
            f'height="{h:.1f}" fill="#4477aa"/>'
        )
    for i, c in enumerate(reference_counts or []):
        h = (height - 2 * pad) * c / top
        parts.append(
            f'<rect x="{pad + i * bar:.1f}" y="{height - pad - h:.1f}" width="{bar - 1:.1f}" '
            f'height="{h:.1f}" fill="none" stroke="#777"/>'
        )
    near = pad + (width - 2 * pad) * NEAR_COPY / MAX_DISTANCE
    parts.append(f'<line x1="{near:.1f}" y1="{pad}" x2="{near:.1f}" y2="{height - pad}" stroke="#cc3311"/>')
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>')
    for k in range(0, 5):
        x = pad + (width - 2 * pad) * k / 4
        parts.append(f'<text x="{x:.1f}" y="{height - pad + 14}" text-anchor="middle">{MAX_DISTANCE * k / 4:.2f}</text>')
    title = "distance to the nearest training image (RMS, [0, 1] pixels)"
    parts.append(f'<text x="{width / 2}" y="{pad - 10}" text-anchor="middle">{title}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def histogram(distances):
    return torch.histc(distances.clamp(max=MAX_DISTANCE - 1e-6), bins=BINS, min=0.0, max=MAX_DISTANCE).int().tolist()


def main():
    job = json.load(open(os.environ["DIFFLOW_JOB"]))
    inputs, out = job["inputs"], job["out_dir"]
    train = images(inputs["train"])
    samples = images(inputs["samples"])
    if samples.shape[1] != train.shape[1]:
        raise SystemExit(f"the samples have {samples.shape[1]} pixels and the training images {train.shape[1]}")
    distances = nearest_distances(samples, train)
    metrics = {
        "mean_nn_distance": distances.mean().item(),
        "min_nn_distance": distances.min().item(),
        "median_nn_distance": distances.median().item(),
        "near_copy_fraction": (distances < NEAR_COPY).float().mean().item(),
        "samples": samples.shape[0],
    }
    reference_counts = None
    if "reference" in inputs:
        held_out = images(inputs["reference"])[: samples.shape[0]]
        reference = nearest_distances(held_out, train)
        metrics["held_out_mean_nn_distance"] = reference.mean().item()
        metrics["held_out_near_copy_fraction"] = (reference < NEAR_COPY).float().mean().item()
        reference_counts = histogram(reference)
    counts = histogram(distances)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    with open(os.path.join(out, "histogram.csv"), "w") as f:
        f.write("bin_start,bin_end,samples" + (",held_out\n" if reference_counts else "\n"))
        for i, c in enumerate(counts):
            lo, hi = MAX_DISTANCE * i / BINS, MAX_DISTANCE * (i + 1) / BINS
            extra = f",{reference_counts[i]}" if reference_counts else ""
            f.write(f"{lo:.4f},{hi:.4f},{c}{extra}\n")
    with open(os.path.join(out, "histogram.svg"), "w") as f:
        f.write(histogram_svg(counts, reference_counts))


if __name__ == "__main__":
    main()
