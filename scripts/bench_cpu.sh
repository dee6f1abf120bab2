#!/usr/bin/env bash
# The CPU speed table: difflow against PyTorch eager and torch.compile (same threads, same
# architecture and weight layout, interleaved rounds), per-step times, ratios, GFLOP/s and
# the share of a 2048^2 matrix product's FLOP/s measured in the same run.
#   scripts/bench_cpu.sh [--threads 2] [--rounds 3] [--steps 3] [--only NAME] [--out FILE] [--no-compile]
# Workloads: the mnist_quick UNet (16x16, batch 32) and a 28x28 MNIST UNet (32 channels,
# mults 1,2,2, attention at 7, batch 64), each a training step and a DDIM step with CFG.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${DIFFLOW_VENV:-$ROOT/.venv}"
export LIBTORCH_USE_PYTORCH=1 PATH="$VENV/bin:$PATH"
cargo build --release --quiet -p difflow-engine --bin difflow-worker
exec "$VENV/bin/python" scripts/unet_speed.py --worker "$ROOT/target/release/difflow-worker" --suite cpu "$@"
