#!/usr/bin/env python3
"""Round-trip time of a 64 B msgpack `echo` through `MoltClient.call`, one call in flight.

The same measurement as `stdio_echo_rtt.py` (the transport's floor, spoken with raw
`struct`), but through the whole client: payload encode, frame, write, the reader thread's
hand-off, decode. The difference between the two is what the client adds.
Prints percentiles in microseconds; `--json` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import msgpack

from molt_accel import MoltClient

REPO = Path(__file__).resolve().parents[2]


def payload_of_size(size: int) -> dict[str, str]:
    """A one-key dict whose msgpack encoding is exactly ``size`` bytes."""
    for length in range(size, -1, -1):
        payload = {"p": "x" * length}
        if len(msgpack.packb(payload)) == size:
            return payload
    raise SystemExit(f"no one-key msgpack dict encodes to exactly {size} bytes; pick another size")


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=str(REPO / "target" / "release" / "molt_worker"))
    parser.add_argument("--exports", default=str(REPO / "molt_exports.json"))
    parser.add_argument("--transport", default="stdio")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    payload = payload_of_size(args.payload_bytes)
    samples_ns: list[int] = []
    with MoltClient(worker_cmd=[args.worker], exports=args.exports, transport=args.transport) as client:
        client.start()
        for _ in range(args.warmup):
            client.call("echo", payload)
        clock = time.perf_counter_ns
        for _ in range(args.calls):
            started = clock()
            client.call("echo", payload)
            samples_ns.append(clock() - started)
    samples_ns.sort()
    result = {
        "what": f"{args.payload_bytes} B msgpack echo through MoltClient.call ({args.transport}), one in flight",
        "calls": args.calls,
        "p50_us": percentile(samples_ns, 0.50) / 1000,
        "p90_us": percentile(samples_ns, 0.90) / 1000,
        "p99_us": percentile(samples_ns, 0.99) / 1000,
        "p999_us": percentile(samples_ns, 0.999) / 1000,
        "mean_us": sum(samples_ns) / len(samples_ns) / 1000,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    print(
        f"{result['what']}: {args.calls} calls  p50 {result['p50_us']:.1f} us  p90 {result['p90_us']:.1f} us  "
        f"p99 {result['p99_us']:.1f} us  p99.9 {result['p999_us']:.1f} us  mean {result['mean_us']:.1f} us"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
