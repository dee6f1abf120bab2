#!/usr/bin/env bash
# Step time of the MNIST UNet's train stage on this machine: 1 process × 2 threads against
# 2 data-parallel processes × 1 thread (Gloo on the loopback), same global batch; prints
# seconds per step (stage duration / steps, from the cache manifests) and the ratio.
#   bench/data_parallel_step.sh [STEPS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export LIBTORCH_USE_PYTORCH=1 PATH="$ROOT/.venv/bin:$PATH"
STEPS="${1:-40}"
cargo build --release --quiet --bin difflow -p difflow
cargo build --release --quiet -p difflow-engine --bin difflow-worker
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/bench.diff" <<DIFF
use "std/unet.diff"
dataset digits = mnist { path = "$ROOT/data/mnist", split = "train", size = 16 }
schedule cos = cosine { steps = 1000 }
model net = unet_small { classes = 10, dropout = 0.0 }
train ddpm { model = net, data = digits, schedule = cos, uncond_p = 0.1, steps = $STEPS, batch = 32, lr = 1e-3 }
DIFF
seconds_per_step() {
    python3 - "$WORK" "$STEPS" <<'PY'
import sys, tomllib, pathlib
work, steps = pathlib.Path(sys.argv[1]), int(sys.argv[2])
lock = tomllib.loads((work / "difflow.lock").read_text())
key = lock["stages"]["ddpm"]["key"]
manifest = tomllib.loads((work / ".difflow/cache" / key / "manifest.toml").read_text())
print(manifest["duration_s"] / steps)
PY
}
echo "threads = 2" > "$WORK/difflow.toml"
(cd "$WORK" && "$ROOT/target/release/difflow" run bench.diff --device cpu > /dev/null)
one=$(seconds_per_step)
echo "threads = 1" > "$WORK/difflow.toml"
(cd "$WORK" && "$ROOT/target/release/difflow" run bench.diff --device cpu --nproc 2 --force ddpm > /dev/null)
two=$(seconds_per_step)
python3 - "$one" "$two" <<'PY'
import sys
one, two = map(float, sys.argv[1:])
print(f"1 process x 2 threads:   {one * 1e3:7.1f} ms/step (stage time incl. start-up / steps)")
print(f"2 processes x 1 thread:  {two * 1e3:7.1f} ms/step")
print(f"speed-up of 2x1 over 1x2: {one / two:.2f}x")
PY
