#!/usr/bin/env python3
"""Python round trip through ``MoltClient.call``: shm against stdio, in one run.

A msgpack ``echo`` of 64 B and of 1 KiB, one call in flight, measured around ``client.call``
(encode, frame, ring or pipe, worker, decode):

- back-to-back: the next call as soon as the last returned (the hot path: both sides are
  still inside their spin window);
- paced: one call every millisecond (both sides have gone to sleep in between, so each call
  pays the wake-ups; this run is time-bound, so it has fewer calls; the count is printed).

Beside them, the same 64 B/1 KiB echo with no transport at all (``in-process``): the
client's encode (msgpack, the call frame), the frame decoded and answered by a Python echo
handler, the reply frame encoded and decoded, the payload unpacked. What shm adds over that
row is the transport's whole cost.

Percentiles come from an HDR histogram (``hdrhistogram``, 3 significant digits). After the
calls, each transport's client and worker sit idle for ``--idle-s`` seconds and their CPU
use over that window is read from /proc (a clock tick is 10 ms, so a 3 s window resolves
0.33 %). The load average is printed with every table: on a shared 2-core machine it
matters more than anything measured here, and so does where the scheduler puts the two
spinning sides (``--pin`` puts them on different cores).

    .venv/bin/python bench/ipc/py_roundtrip.py            # release worker, 100,000 calls
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import msgpack
from hdrh.histogram import HdrHistogram

from molt_accel import MoltClient
from molt_accel._frame import Codec, Frame, Kind, Status, decode_frame, encode_call, encode_frame
from molt_accel._transports import _shm_connection

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ("shm", "stdio")
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def payload_of_size(size: int) -> dict[str, str]:
    """A one-key dict whose msgpack encoding is exactly ``size`` bytes."""
    for length in range(size, -1, -1):
        payload = {"p": "x" * length}
        if len(msgpack.packb(payload)) == size:
            return payload
    raise SystemExit(f"no one-key msgpack dict encodes to exactly {size} bytes; pick another size")


def cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of ``pid``, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as stat_file:
        fields = stat_file.read().rpartition(b")")[2].split()
    return int(fields[11]) + int(fields[12])


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (threads started later inherit it)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {cpu})


def back_to_back(client: MoltClient, payload: object, calls: int) -> HdrHistogram:
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    call, clock, record = client.call, time.perf_counter_ns, histogram.record_value
    for _ in range(calls):
        started = clock()
        call("echo", payload)
        record(clock() - started)
    return histogram


def in_process(payload: object, calls: int) -> HdrHistogram:
    """encode -> handler -> decode with no transport: the floor a round trip is held to."""
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    clock, record, pack, unpack = time.perf_counter_ns, histogram.record_value, msgpack.packb, msgpack.unpackb
    for request_id in range(1, calls + 1):
        started = clock()
        call = decode_frame(encode_call(request_id, b"echo", Codec.MSGPACK, 0, 0, pack(payload)))
        reply = Frame(kind=Kind.REPLY, request_id=call.request_id, codec=call.codec, status=Status.OK,
                      payload=call.payload)
        unpack(decode_frame(encode_frame(reply)).payload)
        record(clock() - started)
    return histogram


def paced(client: MoltClient, payload: object, calls: int, interval_s: float) -> HdrHistogram:
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    call, clock, record = client.call, time.perf_counter_ns, histogram.record_value
    next_at = time.monotonic()
    for _ in range(calls):
        next_at += interval_s
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        started = clock()
        call("echo", payload)
        record(clock() - started)
    return histogram


def idle_cpu_percent(client: MoltClient, spin_window_s: float, idle_s: float) -> tuple[float, float]:
    """(client, worker) CPU over ``idle_s`` of doing nothing, as % of one core."""
    time.sleep(spin_window_s)
    worker_pid = client.worker_pid
    assert worker_pid is not None
    before = (cpu_ticks(os.getpid()), cpu_ticks(worker_pid))
    started = time.monotonic()
    time.sleep(idle_s)
    elapsed = time.monotonic() - started
    after = (cpu_ticks(os.getpid()), cpu_ticks(worker_pid))
    client_pct, worker_pct = (100.0 * (b - a) / CLOCK_TICKS_PER_S / elapsed for a, b in zip(before, after))
    return client_pct, worker_pct


def us(histogram: HdrHistogram, percentile: float) -> float:
    return histogram.get_value_at_percentile(percentile) / 1000


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=str(REPO / "target" / "release" / "molt_worker"))
    parser.add_argument("--exports", default=str(REPO / "molt_exports.json"))
    parser.add_argument("--calls", type=int, default=100_000, help="back-to-back calls per size and transport")
    parser.add_argument("--paced-calls", type=int, default=3_000, help="paced calls per size and transport")
    parser.add_argument("--interval-ms", type=float, default=1.0, help="spacing of the paced calls")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 1024], help="msgpack payload sizes in bytes")
    parser.add_argument("--idle-s", type=float, default=3.0)
    parser.add_argument("--client-spin-us", type=float, help="the client's spin window (default: SPIN_NS)")
    parser.add_argument("--worker-spin-us", type=int, help="the worker's --spin-us (default: its own)")
    parser.add_argument(
        "--pin", action="store_true", help="client on CPU 0, worker on CPU 1 (the scheduler otherwise often puts both on one)"
    )
    args = parser.parse_args()
    if args.client_spin_us is not None:
        _shm_connection.SPIN_NS = int(args.client_spin_us * 1000)
    worker_cmd = [args.worker] + ([] if args.worker_spin_us is None else ["--spin-us", str(args.worker_spin_us)])
    if not Path(args.worker).is_file():
        raise SystemExit(f"{args.worker} is missing: make build-release")

    pinned = ", client pinned to CPU 0 and worker to CPU 1" if args.pin else ""
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, client spin {_shm_connection.SPIN_NS / 1000:g} µs{pinned}, {load()}")
    results: dict[tuple[str, int, str], HdrHistogram] = {}
    idle: dict[str, tuple[float, float]] = {}
    for size in args.sizes:
        in_process(payload_of_size(size), args.warmup)
        results["in-process", size, "back-to-back"] = in_process(payload_of_size(size), args.calls)
    for transport in TRANSPORTS:
        options = {"strict_shm": True} if transport == "shm" else {}
        # stdio has no spin window: --spin-us is a flag of --socket.
        command = worker_cmd if transport == "shm" else [args.worker]
        with MoltClient(worker_cmd=command, exports=args.exports, transport=transport, **options) as client:
            client.start()
            if args.pin:
                assert client.worker_pid is not None
                pin(os.getpid(), 0)
                pin(client.worker_pid, 1)
            for size in args.sizes:
                payload = payload_of_size(size)
                back_to_back(client, payload, args.warmup)
                results[transport, size, "back-to-back"] = back_to_back(client, payload, args.calls)
                results[transport, size, "paced"] = paced(client, payload, args.paced_calls, args.interval_ms / 1000)
                print(f"  {transport} {size} B done, {load()}")
            idle[transport] = idle_cpu_percent(client, spin_window_s=0.5, idle_s=args.idle_s)

    header = " ".join(f"p{p:g}".rjust(9) for p in PERCENTILES)
    print(f"\nround trip in µs ({load()})")
    print(f"{'size':>6} {'mode':<13} {'transport':<10} {'calls':>7} {header}")
    for size in args.sizes:
        for mode in ("back-to-back", "paced"):
            for transport in TRANSPORTS:
                histogram = results[transport, size, mode]
                cells = " ".join(f"{us(histogram, p):9.1f}" for p in PERCENTILES)
                print(f"{size:>6} {mode:<13} {transport:<10} {histogram.get_total_count():>7} {cells}")
            shm, stdio = results["shm", size, mode], results["stdio", size, mode]
            ratios = " ".join(f"{us(stdio, p) / us(shm, p):8.1f}x" for p in PERCENTILES)
            print(f"{size:>6} {mode:<13} {'stdio/shm':<10} {'':>7} {ratios}")
            if mode == "back-to-back":
                floor = results["in-process", size, mode]
                cells = " ".join(f"{us(floor, p):9.1f}" for p in PERCENTILES)
                print(f"{size:>6} {mode:<13} {'in-process':<10} {floor.get_total_count():>7} {cells}")
                added = " ".join(f"{us(shm, p) - us(floor, p):+9.1f}" for p in PERCENTILES)
                print(f"{size:>6} {mode:<13} {'shm added':<10} {'':>7} {added}")
    print(f"\nidle CPU over {args.idle_s:g} s, 0.5 s after the last call (% of one core)")
    for transport, (client_pct, worker_pct) in idle.items():
        print(f"  {transport:<6} client {client_pct:5.2f} %   worker {worker_pct:5.2f} %")


if __name__ == "__main__":
    main()
