#!/usr/bin/env bash
# The main job: set everything up, then run the quickstart pipeline (toy diffusion:
# train, sample with DDPM and DDIM, scatter plot). A second run finds it all cached.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/setup.sh"
exec "$ROOT/target/release/difflow" run "$ROOT/pipelines/quickstart.diff" "$@"
