#!/usr/bin/env bash
# Builds the GPU kit into gpu-kit/: `difflow` and a `difflow-worker` linked against the
# torch of the GPU machine (2.11.0 by default, from a second venv), stripped, with the kit's
# run script, the pipelines and the PyTorch twins; prints its size (the machine accepts
# 64 MiB). Then `gpu-kit/run.sh` there (see docs/gpu_kit.md), or `gpu-kit/run.sh --cpu` here.
#   scripts/gpu_kit.sh [--verify]     --verify: run the packed kit's --cpu mode against that torch
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KIT_TORCH="${KIT_TORCH:-2.11.0}"
KIT_VENV="${KIT_VENV:-$ROOT/.venv-torch${KIT_TORCH//./}}"
KIT="$ROOT/gpu-kit"
say() { printf '\033[1m[gpu-kit]\033[0m %s\n' "$*" >&2; }

if ! "$KIT_VENV/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(version('torch').split('+')[0] != '$KIT_TORCH')" 2>/dev/null; then
    say "installing torch $KIT_TORCH into $KIT_VENV (with its CUDA wheels: the tests import torch)"
    python3 -m venv "$KIT_VENV"
    "$KIT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$KIT_TORCH" numpy safetensors
fi

say "building difflow-worker against torch $KIT_TORCH (target/torch${KIT_TORCH//./})"
# tch 0.26 names torch 2.13; the C++ API it uses is unchanged in 2.11, so the check is bypassed.
( export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$KIT_VENV/bin:$PATH" \
         CARGO_TARGET_DIR="$ROOT/target/torch${KIT_TORCH//./}"
  cargo build --release --quiet -p difflow-engine --bin difflow-worker )
say "building difflow (torch-free: the usual build)"
cargo build --release --quiet -p difflow --bin difflow

rm -rf "$KIT"
mkdir -p "$KIT/bin" "$KIT/py" "$KIT/pipelines"
cp "$ROOT/target/torch${KIT_TORCH//./}/release/difflow-worker" "$ROOT/target/release/difflow" "$KIT/bin/"
strip "$KIT/bin/difflow-worker" "$KIT/bin/difflow"
cp scripts/gpu_kit_run.sh "$KIT/run.sh"
cp scripts/unet_speed.py bench/unet_reference.py scripts/inception_reference.py "$KIT/py/"
cp -r pipelines/*.diff pipelines/study "$KIT/pipelines/"
echo "torch $KIT_TORCH, built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)" > "$KIT/VERSION"
say "gpu-kit/ holds $(du -sh "$KIT" | cut -f1) ($(du -sb "$KIT" | cut -f1) bytes; the limit is 64 MiB)"
if [ "${1:-}" = "--verify" ]; then
    say "verifying the packed kit's --cpu mode against $KIT_VENV"
    KIT_TORCH_VENV="$KIT_VENV" bash "$KIT/run.sh" --cpu
fi
