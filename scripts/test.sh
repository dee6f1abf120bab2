#!/usr/bin/env bash
# The whole test suite: set everything up, then run every test of both crates.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/setup.sh"
cargo test --release --workspace --no-fail-fast "$@"
