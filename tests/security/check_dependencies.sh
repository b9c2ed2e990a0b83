#!/usr/bin/env bash
# Checks the Rust dependency tree against deny.toml: licenses, banned or duplicated crates,
# and sources (the crates.io registry only). Offline: cargo-deny reads Cargo.lock and the
# local registry cache. Advisories are not checked (see deny.toml).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cargo_deny="$("$repo/tests/security/ensure_cargo_deny.sh")"
cd "$repo"
"$cargo_deny" --offline check bans licenses sources
