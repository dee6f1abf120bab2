#!/usr/bin/env bash
# The whole test suite: the user's set-up and the tests' own tools (CI runs this as root on
# a clean clone, where both install everything), then every test of both crates.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/setup_tests.sh"
# The Slurm executor's tests run against a real single-node cluster on this machine:
# start it unless it runs already, and stop it afterwards if this script started it.
if ! "$ROOT/scripts/slurm-local.sh" status >/dev/null 2>&1; then
    started=$(date +%s%N)
    trap '"$ROOT/scripts/slurm-local.sh" stop' EXIT
    if "$ROOT/scripts/slurm-local.sh" start; then
        echo "[test] local Slurm cluster up in $(( ($(date +%s%N) - started) / 1000000 )) ms" >&2
    else
        echo "[test] warning: the local Slurm cluster did not start (above): tests/cli_slurm.rs will fail" >&2
    fi
fi
export SLURM_CONF="$ROOT/.slurm/slurm.conf"
cargo test --release --workspace --no-fail-fast "$@"
