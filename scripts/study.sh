#!/usr/bin/env bash
# Run a study pipeline at its quick size, or at the paper's size with --paper:
#   scripts/study.sh pipelines/study/05_cfg.diff
#   scripts/study.sh --paper pipelines/study/05_cfg.diff [more difflow run options]
# Every study pipeline declares the same six size lets; --paper sets all of them at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIFFLOW="${DIFFLOW:-$ROOT/target/release/difflow}"
SIZES=()
if [[ "${1:-}" == "--paper" ]]; then
    shift
    SIZES=(--set size=28 --set channels=64 --set steps=20000 --set batch=128
           --set count=10000 --set judge_steps=3000)
fi
if [[ $# -lt 1 ]]; then
    echo "usage: scripts/study.sh [--paper] pipelines/study/FILE.diff [difflow run options]" >&2
    exit 1
fi
exec "$DIFFLOW" run "$1" "${SIZES[@]}" "${@:2}"
