#!/usr/bin/env python3
"""What the worker's metrics recording costs: 64 B echo round trips over stdio, metrics on vs off.

Two workers run side by side, one with default metrics (histograms recorded on every reply)
and one with --no-metrics, in two rounds that start them in opposite orders. Calls alternate between them in blocks (ABBA order), one call in flight, so
both see the same machine load over the same minutes; the comparison is within one run.
Prints p50/p90/p99 per side and the p50 difference; `--json` also writes them to a file.
`--control` runs metrics on in both workers (an A/A run): the difference it shows is noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from _stdio_bench import EchoWorker, add_worker_args, percentile


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    us = lambda ns: round(ns / 1000, 2)  # noqa: E731
    return {
        "calls": len(ordered),
        "p50_us": us(percentile(ordered, 0.50)),
        "p90_us": us(percentile(ordered, 0.90)),
        "p99_us": us(percentile(ordered, 0.99)),
        "mean_us": us(sum(ordered) / len(ordered)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_worker_args(parser)
    parser.add_argument("--calls", type=int, default=50_000, help="calls per side")
    parser.add_argument("--warmup", type=int, default=2_000, help="calls per side, not kept")
    parser.add_argument("--block", type=int, default=500, help="calls per side before switching")
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--control", action="store_true",
                        help="A/A run: metrics on in both workers, to see the noise floor")
    args = parser.parse_args()

    payload = bytes(i % 251 for i in range(args.payload_bytes))
    flags = {"metrics_on": [], "metrics_off": [] if args.control else ["--no-metrics"]}
    samples: dict[str, list[int]] = {name: [] for name in flags}
    # Two rounds with the workers started in opposite orders: on a busy machine the process
    # started first is often the faster one (A/A runs show it), whatever its flags.
    quiet = {**os.environ, "RUST_LOG": "warn"}
    for started_first in (("metrics_on", "metrics_off"), ("metrics_off", "metrics_on")):
        workers = {name: EchoWorker(args.worker, args.exports, flags[name], env=quiet) for name in started_first}
        try:
            order = list(started_first)
            for keep, total in ((False, args.warmup), (True, args.calls // 2)):
                done = 0
                while done < total:
                    block = min(args.block, total - done)
                    for name in order:
                        for _ in range(block):
                            elapsed = workers[name].round_trip(payload)
                            if keep:
                                samples[name].append(elapsed)
                    done += block
                    # ABBA: whichever side runs right after a switch pays for it equally often.
                    order.reverse()
        finally:
            for worker in workers.values():
                worker.close()

    on, off = summary(samples["metrics_on"]), summary(samples["metrics_off"])
    result: dict[str, object] = {"metrics_on": on, "metrics_off": off}
    result["p50_difference_pct"] = round(100 * (on["p50_us"] - off["p50_us"]) / off["p50_us"], 2)
    result["p99_difference_pct"] = round(100 * (on["p99_us"] - off["p99_us"]) / off["p99_us"], 2)
    result.update(payload_bytes=args.payload_bytes, control=args.control, python=platform.python_version(),
                  cpus=os.cpu_count(), load_average=os.getloadavg())
    for name, side in (("metrics_on", on), ("metrics_off", off)):
        print(f"{name:12} {side['calls']} calls: p50 {side['p50_us']} us  p90 {side['p90_us']} us  "
              f"p99 {side['p99_us']} us  mean {side['mean_us']} us")
    print(f"p50 difference {result['p50_difference_pct']}%  p99 difference {result['p99_difference_pct']}%")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
