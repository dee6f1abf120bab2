#!/usr/bin/env bash
# The whole test suite: set everything up, then run every test of both crates.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/setup.sh"
# The Slurm executor's tests run against a real single-node cluster on this machine:
# start it unless it runs already, and stop it afterwards if this script started it.
if ! "$ROOT/scripts/slurm-local.sh" status >/dev/null 2>&1; then
    started=$(date +%s%N)
    "$ROOT/scripts/slurm-local.sh" start
    echo "[test] local Slurm cluster up in $(( ($(date +%s%N) - started) / 1000000 )) ms" >&2
    trap '"$ROOT/scripts/slurm-local.sh" stop' EXIT
fi
export SLURM_CONF="$ROOT/.slurm/slurm.conf"
cargo test --release --workspace --no-fail-fast "$@"
