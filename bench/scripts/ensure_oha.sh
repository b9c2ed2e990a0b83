#!/usr/bin/env bash
# Installs the benchmark's load generator, oha, into <repo>/.tools/bin unless it is there.
# Built from source with the project's Rust toolchain (`cargo install --locked`, the versions
# oha pins); nothing is installed system-wide. Prints the binary's path on success.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
version="1.16.0"
oha="$repo/.tools/bin/oha"
if [[ -x "$oha" ]] && "$oha" --version 2>/dev/null | grep -qF "$version"; then
    echo "$oha"
    exit 0
fi
echo "building oha $version into $repo/.tools (once; a few minutes on 2 cores)" >&2
cargo install oha --version "$version" --locked --root "$repo/.tools" >&2
echo "$oha"
