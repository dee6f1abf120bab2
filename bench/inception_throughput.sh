#!/usr/bin/env bash
# Inception feature throughput: difflow (tch) against the same network in PyTorch, same
# machine, same threads, same images; prints both and the ratio difflow / PyTorch.
# The weights are the seeded ones of scripts/inception_reference.py (same layout and cost
# as the published pt_inception file). Usage: bench/inception_throughput.sh [IMAGES] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
# OpenMP waits as in a single `difflow run` worker (libtorch's default) unless OMP_WAIT_POLICY is set.
IMAGES=${1:-64}
THREADS=${2:-$(nproc)}
BATCH=32
WEIGHTS_DIR=target/inception_bench
if [ ! -f "$WEIGHTS_DIR/inception.pth" ]; then
    python scripts/inception_reference.py "$WEIGHTS_DIR" > /dev/null
fi
cargo build --release -q -p difflow-engine --example inception_throughput
# Interleaved repeats, best of each: the machine may be shared, and the best run is the
# one least disturbed by other load.
REPEATS=${REPEATS:-3}
results=()
for _ in $(seq "$REPEATS"); do
    results+=("$(target/release/examples/inception_throughput "$WEIGHTS_DIR/inception.pth" --images "$IMAGES" --batch "$BATCH" --threads "$THREADS")")
    results+=("$(python bench/inception_throughput.py "$WEIGHTS_DIR/inception.pth" --images "$IMAGES" --batch "$BATCH" --threads "$THREADS")")
done
printf '%s\n' "${results[@]}"
runs_file=$(mktemp)
printf '%s\n' "${results[@]}" > "$runs_file"
python - "$runs_file" <<'PY'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
best = {}
for r in runs:
    best[r["impl"]] = max(best.get(r["impl"], 0.0), r["images_per_s"])
ours, theirs = best["difflow"], best["pytorch"]
load = open("/proc/loadavg").read().split()[0]
print(f"best of {len(runs) // 2}: difflow {ours:.2f} img/s, PyTorch {theirs:.2f} img/s, "
      f"ratio difflow/PyTorch {ours / theirs:.3f} ({runs[0]['threads']} threads, load average {load})")
PY
rm -f "$runs_file"
