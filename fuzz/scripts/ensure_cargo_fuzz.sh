#!/usr/bin/env bash
# Installs cargo-fuzz into <repo>/.tools/bin unless it is there, and prints its path.
# Built from source with the project's Rust toolchain (`cargo install --locked`, the versions
# cargo-fuzz pins); nothing is installed system-wide. cargo-fuzz itself builds on stable;
# the fuzz targets it runs need the nightly toolchain (sanitizer flags), see fuzz/README.md.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
version="0.13.1"
cargo_fuzz="$repo/.tools/bin/cargo-fuzz"
if [[ -x "$cargo_fuzz" ]] && "$cargo_fuzz" --version 2>/dev/null | grep -qF "$version"; then
    echo "$cargo_fuzz"
    exit 0
fi
echo "building cargo-fuzz $version into $repo/.tools (once; a few minutes on 2 cores)" >&2
cargo install cargo-fuzz --version "$version" --locked --root "$repo/.tools" >&2
echo "$cargo_fuzz"
