#!/usr/bin/env python3
"""Round-trip time of an `echo` call over molt_worker's stdio transport, one call in flight.

Speaks protocol v1 with a few lines of `struct` instead of the molt_accel client, so the
figures are the transport's floor (pipe, worker, pipe) without any client overhead on top.
Prints percentiles in microseconds; `--json` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from _stdio_bench import EchoWorker, add_worker_args, percentile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_worker_args(parser)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    payload = bytes(i % 251 for i in range(args.payload_bytes))
    worker = EchoWorker(args.worker, args.exports, [])
    samples_ns: list[int] = []
    try:
        for i in range(args.warmup + args.calls):
            elapsed = worker.round_trip(payload)
            if i >= args.warmup:
                samples_ns.append(elapsed)
    finally:
        worker.close()

    samples_ns.sort()
    us = lambda ns: round(ns / 1000, 1)  # noqa: E731
    result = {
        "calls": len(samples_ns),
        "payload_bytes": args.payload_bytes,
        "p50_us": us(percentile(samples_ns, 0.50)),
        "p90_us": us(percentile(samples_ns, 0.90)),
        "p99_us": us(percentile(samples_ns, 0.99)),
        "p999_us": us(percentile(samples_ns, 0.999)),
        "max_us": us(samples_ns[-1]),
        "mean_us": us(sum(samples_ns) / len(samples_ns)),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(f"echo {args.payload_bytes} B over stdio, one in flight, {len(samples_ns)} calls: "
          f"p50 {result['p50_us']} us  p90 {result['p90_us']} us  p99 {result['p99_us']} us  "
          f"p99.9 {result['p999_us']} us  max {result['max_us']} us")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
