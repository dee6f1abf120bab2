#!/usr/bin/env bash
# Editor tooling the tests need, installed when missing (called by scripts/setup.sh):
#   1. Debian's neovim: the real LSP client of tests/lsp_neovim.rs;
#   2. vscode-tmgrammar-test at the version pinned in editors/package.json (and its
#      lock file), in editors/node_modules (gitignored), for tests/editor_grammar.rs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v nvim >/dev/null || missing+=(neovim)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pinned=$(sed -n 's/.*"vscode-tmgrammar-test": "\(.*\)".*/\1/p' "$ROOT/editors/package.json")
installed=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$ROOT/editors/node_modules/vscode-tmgrammar-test/package.json" 2>/dev/null || true)
if [ "$installed" != "$pinned" ]; then
    say "installing vscode-tmgrammar-test $pinned into editors/node_modules"
    (cd "$ROOT/editors" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
