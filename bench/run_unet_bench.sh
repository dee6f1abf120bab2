#!/usr/bin/env bash
# Speed of difflow's UNet against PyTorch eager on the CPU, one run of each, same
# configuration, shapes and thread count; prints both and the ratios (> 1: difflow faster).
#   (a) a training step: difflow's train stage vs the same step in PyTorch
#       (batch, label dropout, q_sample, forward, ε-MSE, backward, clip, AdamW, EMA);
#   (b) DDIM sampling with classifier-free guidance (one batched forward for both halves).
#
#   bench/run_unet_bench.sh [--threads N] [--config JSON] [--train-steps N] [--ddim-steps N] …
# Default configuration: the UNet of pipelines/mnist_quick.diff (1 × 16 × 16, 32 channels,
# mults [1, 2, 2], one res block, 10 classes, 1,063,905 parameters), batch 32, 2 threads.
# For Ho et al.'s CIFAR-10 net: --config '{}' (35,746,307 parameters; slow on a CPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export LIBTORCH_USE_PYTORCH=1 PATH="$ROOT/.venv/bin:$PATH"
# OpenMP waits as in a single `difflow run` worker (libtorch's default) unless OMP_WAIT_POLICY is set.

CONFIG='{"in_ch": 1, "size": 16, "channels": 32, "mults": [1, 2, 2], "res_blocks": 1, "attention": [], "dropout": 0.0, "classes": 10}'
ARGS=(--threads 2 --batch 32 --train-steps 20 --sample-count 16 --ddim-steps 50 --scale 2.0)
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG="$2"; shift 2 ;;
        *) ARGS+=("$1" "$2"); shift 2 ;;
    esac
done

cargo build --release --quiet -p difflow-engine --example unet_bench
echo "configuration: $CONFIG ${ARGS[*]}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
difflow=$("$ROOT/target/release/examples/unet_bench" --config "$CONFIG" "${ARGS[@]}" | grep -v '^{"event"' | tail -1)
torch=$("$ROOT/.venv/bin/python" bench/unet_reference.py --bench --config "$CONFIG" "${ARGS[@]}" | tail -1)
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "difflow: $difflow"
echo "pytorch: $torch"
python3 - "$difflow" "$torch" <<'PY'
import json, sys
d, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert d["params"] == t["params"], f"parameter counts differ: {d['params']} vs {t['params']}"
print(f"parameters: {d['params']:,} (identical)")
print(f"(a) training step: difflow {d['train_step_ms']:.1f} ms, pytorch {t['train_step_ms']:.1f} ms, "
      f"speed ratio pytorch/difflow = {t['train_step_ms'] / d['train_step_ms']:.2f}")
print(f"(b) DDIM + CFG:    difflow {d['ddim_cfg_s']:.2f} s, pytorch {t['ddim_cfg_s']:.2f} s, "
      f"speed ratio pytorch/difflow = {t['ddim_cfg_s'] / d['ddim_cfg_s']:.2f}")
PY
