#!/usr/bin/env bash
# Runs every fuzz target (or those named as arguments) for FUZZ_SECONDS (default 60) each, one
# after the other, on the nightly toolchain (cargo-fuzz's sanitizer flags need it), growing fuzz/corpus/<target>/.
# Prints one summary line per target (executions, new corpus inputs, crash or not); with
# MOLT_RELIABILITY_FIGURES set, also appends them there as JSON lines.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run: copy the input into
# fuzz/corpus/<target>/ once fixed, so `make test` replays it from then on.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cargo_fuzz="$("$repo/scripts/ensure_tool.sh" cargo-fuzz 0.13.1)"
seconds="${FUZZ_SECONDS:-60}"
cd "$repo/fuzz"
targets="${*:-$(RUSTUP_TOOLCHAIN=nightly "$cargo_fuzz" list)}"
# Build everything first, so a compile error is reported as one, not as a crash of a target.
if ! RUSTUP_TOOLCHAIN=nightly "$cargo_fuzz" build >&2; then
    echo "fuzz: the targets do not build (see above)" >&2
    exit 2
fi
failed=0
for target in $targets; do
    log="$(mktemp)"
    before=$(find "corpus/$target" -type f | wc -l)
    status=0
    # -timeout: an input running 10 s is a hang, reported like a crash.
    RUSTUP_TOOLCHAIN=nightly "$cargo_fuzz" run "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(grep -oP '^stat::number_of_executed_units:\s*\K\d+' "$log" | tail -1 || true)
    after=$(find "corpus/$target" -type f | wc -l)
    result=$([[ $status -eq 0 ]] && echo ok || echo "CRASH (see fuzz/artifacts/$target)")
    echo "fuzz $target: ${runs:-?} execs in ${seconds}s, corpus $before -> $after, $result"
    if [[ -n "${MOLT_RELIABILITY_FIGURES:-}" ]]; then
        printf '{"test": "fuzz.%s", "seconds": %s, "execs": %s, "corpus": %s, "crashed": %s}\n' \
            "$target" "$seconds" "${runs:-null}" "$after" "$([[ $status -eq 0 ]] && echo false || echo true)" \
            >>"$MOLT_RELIABILITY_FIGURES"
    fi
    if [[ $status -ne 0 ]]; then
        tail -40 "$log" >&2
        failed=1
    fi
    rm -f "$log"
done
exit "$failed"
