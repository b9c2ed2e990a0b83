#!/usr/bin/env python3
"""Regression gate: compares a short benchmark run's offload/baseline ratios with the committed
`bench/baseline.json` and exits 1 when one regressed beyond the tolerance.

Only ratios are compared (offload/baseline throughput, offload/baseline p99, at the same work
size and concurrency), never absolute figures: both sides of a ratio ran on the same machine
a few seconds apart, so a faster or slower machine moves both and the ratio stays. A check
fails when a throughput ratio fell below `committed × (1 - tolerance)` or a p99 ratio rose above
`committed × (1 + tolerance)`.

    make bench-check                                  # short run, then compare
    python bench/scripts/bench_check.py --result DIR  # compare an existing run
    python bench/scripts/bench_check.py --update      # short run, then commit its ratios

Not part of `make test` or CI: a shared 2-core machine is noisy enough to trip any tolerance
tight enough to matter. Run it on a quiet machine before and after a change on the hot path.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from report import DISTURBED_OTHER_CPU_PCT, comparison_rows

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE_PATH = REPO_ROOT / "bench" / "baseline.json"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DEFAULT_TOLERANCE = 0.30


def ratios_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparable ratios of a result: one entry per offloaded run with a baseline twin."""
    return [
        {
            "endpoint": row["endpoint"],
            "work_param": row["work_param"],
            "rows": row["rows"],
            "concurrency": row["concurrency"],
            "rps_ratio": row["rps_ratio"],
            "p99_ratio": row["p99_ratio"],
        }
        for row in comparison_rows(result)
    ]


def compare(committed: list[dict[str, Any]], current: list[dict[str, Any]], tolerance: float) -> list[str]:
    """Human-readable regressions of `current` against `committed` (empty when none)."""
    by_key = {(r["endpoint"], r["rows"], r["concurrency"]): r for r in current}
    problems = []
    for reference in committed:
        key = (reference["endpoint"], reference["rows"], reference["concurrency"])
        where = f"{reference['endpoint']} {reference['work_param']}={reference['rows']} c={reference['concurrency']}"
        now = by_key.get(key)
        if now is None:
            problems.append(f"{where}: not measured in this run")
            continue
        if reference["rps_ratio"] is not None:
            floor = reference["rps_ratio"] * (1 - tolerance)
            if now["rps_ratio"] is None or now["rps_ratio"] < floor:
                problems.append(
                    f"{where}: throughput ratio {fmt(now['rps_ratio'])} < {floor:.2f} "
                    f"(committed {reference['rps_ratio']:.2f}, tolerance {tolerance:.0%})"
                )
        if reference["p99_ratio"] is not None:
            ceiling = reference["p99_ratio"] * (1 + tolerance)
            if now["p99_ratio"] is None or now["p99_ratio"] > ceiling:
                problems.append(
                    f"{where}: p99 ratio {fmt(now['p99_ratio'])} > {ceiling:.2f} "
                    f"(committed {reference['p99_ratio']:.2f}, tolerance {tolerance:.0%})"
                )
    return problems


def fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def short_run(out_dir: Path) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("run_demo_bench.py")), "--profile", "short",
         "--no-cancel-check", "--out", str(out_dir)],
        check=True,
    )
    return json.loads((out_dir / "result.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, help="compare this result directory instead of running")
    parser.add_argument("--baseline", type=Path, default=BASELINE_PATH)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--update", action="store_true", help="write the run's ratios as the new baseline")
    args = parser.parse_args()

    scratch = None
    if args.result is not None:
        result = json.loads((args.result / "result.json").read_text())
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="_tmp-check-", dir=RESULTS_DIR))
        result = short_run(scratch)
    try:
        current = ratios_of(result)
        if args.update:
            args.baseline.write_text(json.dumps(
                {"from": {"started_at": result["started_at"], "commit": result["git"]["commit"],
                          "machine": result["machine"], "settings": result["settings"]},
                 "ratios": current}, indent=2) + "\n")
            print(f"wrote {len(current)} ratios to {args.baseline}")
            return 0
        reference = json.loads(args.baseline.read_text())
        committed = reference["ratios"]
        problems = compare(committed, current, args.tolerance)
        committed_transport = reference["from"]["settings"]["transport"]
        if committed_transport != result["settings"]["transport"]:
            print(f"bench-check: note: the baseline was measured over {committed_transport}, this run over "
                  f"{result['settings']['transport']}; the ratios are not expected to match")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    others = [run["other_cpu_pct"] for run in result["runs"] if run.get("other_cpu_pct") is not None]
    if others and sum(others) / len(others) > DISTURBED_OTHER_CPU_PCT:
        print(f"bench-check: note: other processes used {sum(others) / len(others):.0f} % of a core on "
              "average during this run; its ratios are disturbed, run again on a quiet machine")
    if problems:
        print("bench-check: regression beyond tolerance:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"bench-check: {len(committed)} ratios within {args.tolerance:.0%} of {args.baseline.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
