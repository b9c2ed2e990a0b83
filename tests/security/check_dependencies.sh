#!/usr/bin/env bash
# Checks the Rust dependency tree against deny.toml: licenses, banned or duplicated crates,
# and sources (the default Rust package registry only). Offline: cargo-deny reads Cargo.lock and the
# local registry cache. Advisories are not checked (see deny.toml).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cargo_deny="$("$repo/scripts/ensure_tool.sh" cargo-deny 0.20.2)"
cd "$repo"
"$cargo_deny" --offline check bans licenses sources
