#!/usr/bin/env python3
"""Throughput of one entry in molt_worker over stdio, with a window of calls in flight.

Keeps `--window` calls outstanding (below the worker's admission queue, so nothing is
answered Busy) and reports calls per second, plus the worker's own per-call `exec_us` and
`queue_us` from the reply metrics. Like stdio_echo_rtt.py it speaks protocol v1 with
`struct`, so client overhead stays out of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgpack

from _stdio_bench import HEADER, MSGPACK, OK, REPLY, add_worker_args, call_frame, percentile, read_reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_worker_args(parser)
    parser.add_argument("--entry", default="list_items")
    parser.add_argument("--payload", default='{"user_id": 7, "rows": 2000}',
                        help="call payload as JSON; sent as MsgPack")
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--compute-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    entry = args.entry.encode()
    payload = msgpack.packb(json.loads(args.payload))
    proc = subprocess.Popen(
        [args.worker, "--stdio", "--exports", args.exports,
         "--compute-threads", str(args.compute_threads), "--max-queue", str(max(64, args.window))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    exec_us: list[int] = []
    queue_us: list[int] = []
    sent = 0
    start = time.perf_counter()
    try:
        while sent < min(args.window, args.calls):
            sent += 1
            proc.stdin.write(call_frame(sent, entry, payload, MSGPACK))
        proc.stdin.flush()
        for _ in range(args.calls):
            reply = read_reply(proc.stdout)
            fields = HEADER.unpack_from(reply)
            kind, status, q_us, e_us = fields[2], fields[4], fields[10], fields[11]
            if (kind, status) != (REPLY, OK):
                raise SystemExit(f"unexpected reply: kind {kind} status {status}: "
                                 f"{reply[HEADER.size:][:200]!r}")
            exec_us.append(e_us)
            queue_us.append(q_us)
            if sent < args.calls:
                sent += 1
                proc.stdin.write(call_frame(sent, entry, payload, MSGPACK))
                proc.stdin.flush()
        elapsed = time.perf_counter() - start
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)

    exec_us.sort()
    queue_us.sort()
    result = {
        "entry": args.entry,
        "payload": json.loads(args.payload),
        "calls": args.calls,
        "window": args.window,
        "compute_threads": args.compute_threads,
        "calls_per_s": round(args.calls / elapsed),
        "exec_us_p50": percentile(exec_us, 0.5),
        "exec_us_p99": percentile(exec_us, 0.99),
        "queue_us_p50": percentile(queue_us, 0.5),
    }
    print(f"{args.entry} {args.payload}: {result['calls_per_s']} calls/s "
          f"({args.compute_threads} compute threads, window {args.window}); in the worker: "
          f"exec p50 {result['exec_us_p50']} us, p99 {result['exec_us_p99']} us")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
