#!/usr/bin/env bash
# What only the test suite needs, on top of scripts/setup.sh (scripts/test.sh runs both),
# each installed when missing:
#   - diffusers 0.42.1 in the venv: the oracle of engine/tests/diffusers*.rs (Python >= 3.11);
#   - tensorboard in the venv: its EventAccumulator reads the live logs (engine/tests/train_log.rs);
#   - Debian packages, with apt-get as root or through sudo: chromium (the report's browser
#     check), libjemalloc2 (a worker under a preloaded malloc), neovim (the real LSP client),
#     nodejs and npm (for the grammar test tool), nginx-light (an HTTP remote cache),
#     slurmctld, slurmd, slurm-client and munge
#     (the local Slurm cluster of the Slurm executor's tests);
#   - vscode-tmgrammar-test at the version pinned in editors/package.json (and its lock
#     file), in editors/node_modules (gitignored);
#   - s3rver (an S3-compatible server that keeps objects in files, for the S3 remote) at the
#     version pinned in tests/s3_server/package.json, in tests/s3_server/node_modules (gitignored);
#   - data/mnist, the embedded MNIST digits (scripts/fetch_mnist.py).
# What it cannot install it names, with the tests that fail without it, and goes on: the
# rest of the suite still runs. CI runs it as root on Debian, where everything installs.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${DIFFLOW_VENV:-$ROOT/.venv}"
DIFFUSERS_VERSION=0.42.1
say() { printf '\033[1m[setup-tests]\033[0m %s\n' "$*" >&2; }
lacking=()
lack() { lacking+=("$1"); say "warning: $1"; }

# pin PACKAGE VERSION WHAT TESTS: install PACKAGE==VERSION into the venv unless it is there.
pin() {
    if ! "$VENV/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(version('$1') != '$2')
" 2>/dev/null; then
        say "installing $1 $2 into $VENV ($3)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$1==$2" ||
            lack "$1 $2 is not in $VENV: $4 will fail"
    fi
}
pin diffusers "$DIFFUSERS_VERSION" "the oracle of the diffusers tests" "engine/tests/diffusers.rs and diffusers_cli.rs"
# TensorBoard's own reader (EventAccumulator) checks the live training logs.
pin tensorboard 2.21.0 "the reader of the live-log test" "engine/tests/train_log.rs"

# Debian package → the command or file that shows it is installed, and the tests that need it.
declare -A PROBE=(
    [chromium]="chromium" [libjemalloc2]="/usr/lib/x86_64-linux-gnu/libjemalloc.so.2" [neovim]="nvim"
    [nodejs]="node" [npm]="npm" [slurmctld]="slurmctld" [slurmd]="slurmd" [slurm-client]="sbatch" [munge]="munged"
    [nginx-light]="nginx"
)
declare -A NEEDED_BY=(
    [chromium]="tests/study.rs (the report opened in a browser)" [libjemalloc2]="engine/tests/preloaded_malloc.rs"
    [neovim]="tests/lsp_neovim.rs" [nodejs]="tests/editor_grammar.rs" [npm]="tests/editor_grammar.rs"
    [slurmctld]="tests/cli_slurm.rs" [slurmd]="tests/cli_slurm.rs" [slurm-client]="tests/cli_slurm.rs"
    [munge]="tests/cli_slurm.rs" [nginx-light]="tests/remote.rs (an HTTP remote cache on a WebDAV server)"
)
present() { # present PACKAGE: its probe is an existing file or a command on PATH (or in sbin)
    local probe="${PROBE[$1]}"
    if [[ "$probe" == /* ]]; then [ -e "$probe" ]; else PATH="$PATH:/usr/sbin:/sbin" command -v "$probe" >/dev/null 2>&1; fi
}
packages=(chromium neovim nodejs npm slurmctld slurmd slurm-client munge nginx-light)
# The preloaded-malloc test uses the x86_64 multiarch path.
[ "$(uname -m)" = x86_64 ] && packages+=(libjemalloc2)
missing=()
for package in "${packages[@]}"; do present "$package" || missing+=("$package"); done

if [ ${#missing[@]} -gt 0 ]; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no apt-get here: install ${missing[*]} (or their equivalents) with this system's package manager"
    elif [ ${#as_root[@]} -gt 0 ] && ! command -v sudo >/dev/null 2>&1; then
        say "not root and no sudo: ask an administrator for the Debian packages ${missing[*]}"
    else
        say "installing Debian's ${missing[*]} for the tests (${as_root[*]:+with sudo, }apt-get)"
        # chromium and libjemalloc2 without their recommended packages, as before; the rest as Debian ships them.
        lean=() full=()
        for package in "${missing[@]}"; do
            case "$package" in chromium | libjemalloc2) lean+=("$package") ;; *) full+=("$package") ;; esac
        done
        apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
        { "${apt[@]}" update -qq &&
            { [ ${#lean[@]} -eq 0 ] || "${apt[@]}" install -y -qq --no-install-recommends "${lean[@]}" >/dev/null; } &&
            { [ ${#full[@]} -eq 0 ] || "${apt[@]}" install -y -qq "${full[@]}" >/dev/null; }; } ||
            say "apt-get could not install them all (see above)"
    fi
    for package in "${missing[@]}"; do
        present "$package" || lack "Debian's $package is missing: ${NEEDED_BY[$package]} will fail"
    done
fi

# npm_pin FOLDER PACKAGE TESTS: `npm ci` in FOLDER unless PACKAGE is there at the version its
# package.json pins.
npm_pin() {
    local pinned installed
    pinned=$(sed -n "s/.*\"$2\": \"\(.*\)\".*/\1/p" "$1/package.json")
    installed=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$1/node_modules/$2/package.json" 2>/dev/null || true)
    [ "$installed" = "$pinned" ] && return
    if command -v npm >/dev/null 2>&1; then
        say "installing $2 $pinned into $1/node_modules"
        (cd "$1" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
            lack "\`npm ci\` in $1 failed: $3 will fail"
    else
        lack "$2 is not in $1/node_modules (it needs npm): $3 will fail"
    fi
}
npm_pin editors vscode-tmgrammar-test "tests/editor_grammar.rs"
npm_pin tests/s3_server s3rver "tests/remote_s3.rs (an S3 remote cache)"

"$VENV/bin/python" scripts/fetch_mnist.py data/mnist >/dev/null ||
    lack "data/mnist could not be made: the tests that train on the embedded MNIST will fail"

if [ ${#lacking[@]} -gt 0 ]; then
    say "the test set-up is incomplete (${#lacking[@]} item(s) above); the other tests do not need them"
fi
exit 0
