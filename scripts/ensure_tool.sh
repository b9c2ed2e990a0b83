#!/usr/bin/env bash
# Usage: scripts/ensure_tool.sh CRATE VERSION [cargo install options...]
#
# Installs the binary of registry crate CRATE at VERSION into <repo>/.tools/bin unless that
# version is there already, and prints the binary's path. Built from source with the
# project's Rust toolchain (`cargo install --locked`: the dependency versions the crate pins);
# nothing is installed system-wide. The benchmark's load generator (oha), cargo-fuzz and
# cargo-deny all come this way.
set -euo pipefail
crate="$1"
version="$2"
shift 2
repo="$(cd "$(dirname "$0")/.." && pwd)"
binary="$repo/.tools/bin/$crate"
if [[ -x "$binary" ]] && "$binary" --version 2>/dev/null | grep -qF "$version"; then
    echo "$binary"
    exit 0
fi
echo "building $crate $version into $repo/.tools (once; minutes on 2 cores)" >&2
cargo install "$crate" --version "$version" --locked --root "$repo/.tools" "$@" >&2
echo "$binary"
