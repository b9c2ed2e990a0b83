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
import struct
import subprocess
import sys
import time
from pathlib import Path

from stdio_echo_rtt import HEADER, OK, REPLY, call_frame, percentile, read_exactly

REPO = Path(__file__).resolve().parents[2]


class EchoWorker:
    def __init__(self, worker: str, exports: str, extra: list[str]) -> None:
        self.proc = subprocess.Popen([worker, "--stdio", "--exports", exports, *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                     env={**os.environ, "RUST_LOG": "warn"})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out_fd, self.in_fd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.next_id = 1

    def round_trip(self, payload: bytes) -> int:
        """One echo call; returns its round trip in ns."""
        request_id, self.next_id = self.next_id, self.next_id + 1
        frame = call_frame(request_id, payload)
        start = time.perf_counter_ns()
        os.write(self.out_fd, frame)
        (length,) = struct.unpack("<I", read_exactly(self.in_fd, 4))
        reply = read_exactly(self.in_fd, length)
        elapsed = time.perf_counter_ns() - start
        _, _, kind, _, status, _, _, _, reply_id, *_ = HEADER.unpack_from(reply)
        if (kind, status, reply_id) != (REPLY, OK, request_id) or reply[HEADER.size:] != payload:
            raise SystemExit(f"unexpected reply to call {request_id}: kind {kind} status {status}")
        return elapsed

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)



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
    parser.add_argument("--worker", default=str(REPO / "target" / "release" / "molt_worker"))
    parser.add_argument("--exports", default=str(REPO / "molt_exports.json"))
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
    for started_first in (("metrics_on", "metrics_off"), ("metrics_off", "metrics_on")):
        workers = {name: EchoWorker(args.worker, args.exports, flags[name]) for name in started_first}
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
