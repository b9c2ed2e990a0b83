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
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADER = struct.Struct("<4sBBBBIHHQQIIII")
CALL, REPLY, OK, RAW = 1, 2, 0, 0


def call_frame(request_id: int, payload: bytes) -> bytes:
    entry = b"echo"
    frame = HEADER.pack(b"MOLT", 1, CALL, RAW, 0, 0, len(entry), 0, request_id, 0, 0, 0, 0,
                        len(payload)) + entry + payload
    return struct.pack("<I", len(frame)) + frame


def read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise SystemExit("molt_worker closed stdout")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=str(REPO / "target" / "release" / "molt_worker"))
    parser.add_argument("--exports", default=str(REPO / "molt_exports.json"))
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    payload = bytes(i % 251 for i in range(args.payload_bytes))
    proc = subprocess.Popen([args.worker, "--stdio", "--exports", args.exports],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    out_fd, in_fd = proc.stdin.fileno(), proc.stdout.fileno()
    samples_ns: list[int] = []
    try:
        for i in range(args.warmup + args.calls):
            frame = call_frame(i + 1, payload)
            start = time.perf_counter_ns()
            os.write(out_fd, frame)
            (length,) = struct.unpack("<I", read_exactly(in_fd, 4))
            reply = read_exactly(in_fd, length)
            elapsed = time.perf_counter_ns() - start
            _, _, kind, _, status, _, _, _, request_id, *_ = HEADER.unpack_from(reply)
            if (kind, status, request_id) != (REPLY, OK, i + 1) or reply[HEADER.size:] != payload:
                raise SystemExit(f"unexpected reply to call {i + 1}: kind {kind} status {status}")
            if i >= args.warmup:
                samples_ns.append(elapsed)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)

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
