#!/usr/bin/env bash
# Installs cargo-deny into <repo>/.tools/bin unless it is there, and prints its path.
# Built from source with the project's Rust toolchain (`cargo install --locked`); nothing is
# installed system-wide.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
version="0.20.2"
cargo_deny="$repo/.tools/bin/cargo-deny"
if [[ -x "$cargo_deny" ]] && "$cargo_deny" --version 2>/dev/null | grep -qF "$version"; then
    echo "$cargo_deny"
    exit 0
fi
echo "building cargo-deny $version into $repo/.tools (once; several minutes on 2 cores)" >&2
cargo install cargo-deny --version "$version" --locked --root "$repo/.tools" >&2
echo "$cargo_deny"
