#!/usr/bin/env bash
# Builds the GPU kit into gpu-kit/: `difflow` and a `difflow-worker` linked against the
# torch of the GPU machine (2.11.0 by default, from a second venv), stripped, with the NCCL
# shim built against the same torch (lib/), the kit's run script, the pipelines and the
# PyTorch twins; prints its size (the machine accepts 64 MiB). Then `gpu-kit/run.sh` there
# (see docs/gpu_kit.md), or `gpu-kit/run.sh --cpu` here.
#   scripts/gpu_kit.sh [--verify]     --verify: run the packed kit's --cpu mode against that torch
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KIT_TORCH="${KIT_TORCH:-2.11.0}"
KIT_TAG="${KIT_TORCH%.*}"; KIT_TAG="${KIT_TAG//./}"   # 2.11.0 → 211
KIT_VENV="${KIT_VENV:-$ROOT/.venv-torch$KIT_TAG}"
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

# The NCCL shim compiles against the CUDA runtime headers of the wheel's nvidia-cuda-runtime,
# which include headers of nvidia-cuda-crt and nvidia-cuda-cccl (as in scripts/setup.sh).
CUDA_RUNTIME=$("$KIT_VENV/bin/python" -c "
from importlib.metadata import version
print('.'.join(version('nvidia-cuda-runtime').split('.')[:2]))")
if ! "$KIT_VENV/bin/python" -c "
import importlib.metadata as m; m.version('nvidia-cuda-crt'); m.version('nvidia-cuda-cccl')" 2>/dev/null; then
    say "installing nvidia-cuda-crt and nvidia-cuda-cccl ~= $CUDA_RUNTIME.0 into $KIT_VENV (CUDA headers for the NCCL shim)"
    "$KIT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        "nvidia-cuda-crt~=$CUDA_RUNTIME.0" "nvidia-cuda-cccl~=$CUDA_RUNTIME.0"
fi

BUILD="$ROOT/target/torch$KIT_TAG"
say "building difflow-worker against torch $KIT_TORCH in $BUILD"
# tch 0.26's C++ wrapper is generated from PyTorch 2.13: a copy of torch-sys with the few
# wrappers of operators that 2.11 lacks stubbed out (difflow calls none of them) replaces it,
# in a copy of the sources so that the repository's Cargo.lock stays as it is.
REGISTRY_TORCH_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/torch-sys-0.26.0 2>/dev/null | head -1)
[ -n "$REGISTRY_TORCH_SYS" ] || { cargo fetch --quiet; REGISTRY_TORCH_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/torch-sys-0.26.0 | head -1); }
mkdir -p "$BUILD/src"
rm -rf "$BUILD/torch-sys"
cp -r "$REGISTRY_TORCH_SYS" "$BUILD/torch-sys"
python3 scripts/torch_sys_compat.py "$BUILD/torch-sys"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$BUILD/src"
( cd "$BUILD/src"
  # tch checks for the PyTorch it was generated from; the C++ API it uses is unchanged in 2.11.
  export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 PATH="$KIT_VENV/bin:$PATH" CARGO_TARGET_DIR="$BUILD/target"
  cargo build --release --quiet -p difflow-engine --bin difflow-worker --message-format=json-render-diagnostics \
      --config "patch.crates-io.torch-sys.path=\"$BUILD/torch-sys\"" >"$BUILD/build-messages.json" )
# The engine's build script compiled the NCCL shim (for this torch) into its OUT_DIR.
NCCL_SHIM=$(python3 -c '
import json, os, sys
for line in open(sys.argv[1]):
    message = json.loads(line)
    if message.get("reason") == "build-script-executed" and "difflow-engine" in message["package_id"]:
        print(os.path.join(message["out_dir"], "libdifflow_nccl.so"))' "$BUILD/build-messages.json")
[ -n "$NCCL_SHIM" ] && [ -f "$NCCL_SHIM" ] || {
    say "the NCCL shim was not built against torch $KIT_TORCH (see the build's warning: CUDA or NCCL headers missing?)"
    exit 1
}
say "building difflow (torch-free: the usual build)"
cargo build --release --quiet -p difflow --bin difflow

rm -rf "$KIT"
mkdir -p "$KIT/bin" "$KIT/py" "$KIT/pipelines"
cp "$BUILD/target/release/difflow-worker" "$ROOT/target/release/difflow" "$KIT/bin/"
strip "$KIT/bin/difflow-worker" "$KIT/bin/difflow"
# The worker looks for the NCCL shim beside itself and in lib/ beside bin/ before its build path.
mkdir -p "$KIT/lib"
cp "$NCCL_SHIM" "$KIT/lib/"
strip --strip-unneeded "$KIT/lib/libdifflow_nccl.so"
# The plotting code links fontconfig and freetype (and their libraries): carried along in
# lib/, last on the library path, for a GPU machine whose system lacks them.
ldd "$KIT/bin/difflow-worker" | awk '/=> \// {print $3}' \
    | grep -E 'lib(fontconfig|freetype|expat|png16|brotli(dec|common)|z)\.so' | xargs -r cp -L -t "$KIT/lib/"
cp scripts/gpu_kit_run.sh "$KIT/run.sh"
cp scripts/unet_speed.py bench/unet_reference.py scripts/inception_reference.py "$KIT/py/"
cp -r pipelines/*.diff pipelines/study "$KIT/pipelines/"
echo "torch $KIT_TORCH, built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)" > "$KIT/VERSION"
say "gpu-kit/ holds $(du -sh "$KIT" | cut -f1) ($(du -sb "$KIT" | cut -f1) bytes; the limit is 64 MiB)"
if [ "${1:-}" = "--verify" ]; then
    say "verifying the packed kit's --cpu mode against $KIT_VENV"
    KIT_TORCH_VENV="$KIT_VENV" bash "$KIT/run.sh" --cpu
fi
