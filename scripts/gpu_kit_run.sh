#!/usr/bin/env bash
# The GPU kit's one command (packed as gpu-kit/run.sh by scripts/gpu_kit.sh):
#   1. device checks: `difflow-worker check` computes the UNet forward, a training step's
#      loss and gradient norm (fp32 and bf16 autocast), a few AdamW steps, DDIM / DDPM /
#      DPM-Solver samples with per-sample noise and Inception features on the device and on
#      the CPU from the same weights, and compares them; then NCCL: the shim loads (from the
#      kit's lib/) and, on a GPU, a world of one rank forms an NCCL group and all-reduces,
#      broadcasts and passes a barrier (skipped, saying so, when no GPU is present);
#   2. the front end: `difflow check` on the packed pipelines;
#   3. the speed table: difflow against PyTorch eager (bf16 autocast, channels-last) and
#      torch.compile on the same device, interleaved, with FLOP utilisation against a
#      measured bf16 matrix-product peak.
# Prints everything and writes the table to $OUT (default ./gpu-kit-results.txt).
#
#   run.sh [--cpu] [--quick] [--worker BIN] [--difflow BIN] [--python PY] [--out FILE]
#   --cpu: everything on the CPU with tiny sizes (the test suite runs this);
#   --quick: leave torch.compile out of the speed table (its compilation takes minutes on a CPU).
# The torch libraries come from $KIT_TORCH_VENV (default /opt/torch/.venv): torch/lib and
# the nvidia/*/lib folders of its site-packages go on LD_LIBRARY_PATH.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE=cuda
SUITE=gpu
WORKER="$HERE/bin/difflow-worker"
DIFFLOW="$HERE/bin/difflow"
PY_DIR="$HERE/py"
PIPELINES="$HERE/pipelines"
OUT="$PWD/gpu-kit-results.txt"
VENV="${KIT_TORCH_VENV:-/opt/torch/.venv}"
PYTHON=""
SPEED_ARGS=(--rounds 3 --steps 10)
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) DEVICE=cpu; SUITE=tiny; SPEED_ARGS=(--rounds 1 --steps 1); shift ;;
        --quick) SPEED_ARGS+=(--no-compile); shift ;;
        --worker) WORKER="$2"; shift 2 ;;
        --difflow) DIFFLOW="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        --py-dir) PY_DIR="$2"; shift 2 ;;
        --pipelines) PIPELINES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
PYTHON="${PYTHON:-$VENV/bin/python}"
SITE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
LIBS="$SITE/torch/lib"
for lib in "$SITE"/nvidia/*/lib; do [ -d "$lib" ] && LIBS="$LIBS:$lib"; done
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$HERE/lib"
say() { printf '\033[1m[kit]\033[0m %s\n' "$*" >&2; }

say "torch $("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)'), device $DEVICE"
say "1/3 device checks (difflow on $DEVICE against difflow on the CPU)"
if [ "$DEVICE" = cpu ]; then
    CHECK=(--model '{"in_ch":1,"size":8,"channels":16,"mults":[1,2],"res_blocks":1,"attention":[4],"dropout":0.0,"classes":10}'
           --batch 2 --sample-count 2 --inception-batch 1 --threads 2)
else
    CHECK=(--model '{"in_ch":1,"size":28,"channels":32,"mults":[1,2,2],"res_blocks":1,"attention":[7],"dropout":0.0,"classes":10}'
           --batch 16 --sample-count 16 --inception-batch 8)
fi
STATUS=0
CHECKS=$("$WORKER" check --device "$DEVICE" "${CHECK[@]}") || STATUS=$?
echo "$CHECKS"
if [ "$STATUS" -ne 0 ]; then
    # A failed NCCL check says nothing about the one-process speed figures: go on to the
    # table (the kit still exits non-zero); any other failure makes the figures suspect.
    FAILED=$(grep '"ok":false' <<<"$CHECKS" || true)
    if [ -n "$FAILED" ] && ! grep -qv '"check":"nccl_' <<<"$FAILED"; then
        say "NCCL checks FAILED (above); the speed table still runs"
    else
        say "device checks FAILED"
        exit 1
    fi
fi

say "2/3 the front end: difflow check on the packed pipelines"
for pipeline in "$PIPELINES"/*.diff; do
    "$DIFFLOW" check "$pipeline" >/dev/null || { say "difflow check $pipeline FAILED"; exit 1; }
done
echo "difflow check: $(ls "$PIPELINES"/*.diff | wc -l) pipelines pass"

say "3/3 speed"
"$PYTHON" "$PY_DIR/unet_speed.py" --worker "$WORKER" --suite "$SUITE" --device "$DEVICE" "${SPEED_ARGS[@]}" --out "$OUT"
{ echo; echo "device checks:"; echo "$CHECKS"; } >> "$OUT"
say "the table and the checks are in $OUT"
exit "$STATUS"
