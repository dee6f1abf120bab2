#!/usr/bin/env bash
# The main job: the user's set-up (scripts/setup.sh: no root, no system package), then a
# pipeline: pipelines/quickstart.diff (toy diffusion: train, sample with DDPM and DDIM,
# scatter plot) unless another .diff is named first, e.g. `bash scripts/quickstart.sh
# pipelines/mnist_quick.diff` (the embedded MNIST). Further arguments go to `difflow run`.
# A second run finds everything cached.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIPELINE="$ROOT/pipelines/quickstart.diff"
if [ $# -gt 0 ] && [[ "$1" == *.diff ]]; then
    PIPELINE="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
    shift
fi
. "$ROOT/scripts/setup.sh"
exec "$ROOT/target/release/difflow" run "$PIPELINE" "$@"
