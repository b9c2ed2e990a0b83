#!/usr/bin/env python3
"""CPU per ``MoltClient.acall`` over shm, from an event loop, against ``MoltClient.call``.

``/offload_async`` is the demo's ``list_items`` call (rows=200, limit=50, the JSON
pass-through) from an ``async def`` view; this runs that call alone, without Django or HTTP,
so that what the client's asyncio path costs per call can be told apart from what uvicorn and
Django's async handler cost. For each concurrency (tasks on one loop, each awaiting its next
call as soon as the last returned) it reports per call:

- the client process's CPU (``time.process_time``: every thread, the reader included) and the
  worker's (``/proc/PID/stat``, 10 ms ticks: enough over thousands of calls);
- context switches of the loop's thread and of the connection's reader thread (voluntary:
  it slept, involuntary: it was preempted), from ``/proc/self/task/TID/status``;
- the wall time per call (throughput, not latency: several calls overlap).

The sync row is ``client.call`` back to back from one thread, the reference the async path is
held to. CPU time is noisy on a shared 2-core machine; instruction counts are not:

    valgrind --tool=callgrind --callgrind-out-file=/tmp/acall.cg \\
        .venv/bin/python bench/ipc/py_async.py --calls 2000 --concurrency 16 --no-sync

counts the client process alone (the worker is another process, not traced).

    .venv/bin/python bench/ipc/py_async.py                 # release worker, uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import threading
import time
from pathlib import Path

from molt_accel import MoltClient

REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: The demo's request at rows=200 (``demoapp/query.py`` builds the same dict from the URL).
LIST_ITEMS = {"user_id": 4242, "rows": 200, "limit": 50}


def cpu_s(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as stat_file:
        fields = stat_file.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def switches(native_id: int | None) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of one thread of this process so far."""
    if native_id is None:
        return (0, 0)
    counts = {}
    with open(f"/proc/self/task/{native_id}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key.endswith("ctxt_switches"):
                counts[key] = int(value)
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


def reader_thread_id() -> int | None:
    """The newest reader thread's id: the current loop's (an earlier loop's may be ending)."""
    readers = [thread.native_id for thread in threading.enumerate() if thread.name == "molt-shm-reader"]
    return readers[-1] if readers else None


class Meter:
    """CPU, context switches and wall time between ``start`` and ``stop``."""

    def __init__(self, worker_pid: int) -> None:
        self.worker_pid = worker_pid

    def start(self) -> None:
        self.loop_thread = threading.get_native_id()
        self.reader = reader_thread_id()
        self.wall = time.perf_counter()
        self.client_cpu = time.process_time()
        self.worker_cpu = cpu_s(self.worker_pid)
        self.loop_switches = switches(self.loop_thread)
        self.reader_switches = switches(self.reader)

    def stop(self, calls: int) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        client_cpu = time.process_time() - self.client_cpu
        worker_cpu = cpu_s(self.worker_pid) - self.worker_cpu
        loop_switches = [b - a for a, b in zip(self.loop_switches, switches(self.loop_thread))]
        reader_switches = [b - a for a, b in zip(self.reader_switches, switches(self.reader))]
        per_call = 1e6 / calls
        return {
            "wall_us": wall * per_call,
            "client_cpu_us": client_cpu * per_call,
            "worker_cpu_us": worker_cpu * per_call,
            "loop_vol": loop_switches[0] / calls,
            "loop_invol": loop_switches[1] / calls,
            "reader_vol": reader_switches[0] / calls,
            "reader_invol": reader_switches[1] / calls,
        }


async def run_async(client: MoltClient, meter: Meter, calls: int, concurrency: int, warmup: int) -> dict[str, float]:
    acall = client.acall

    async def caller(count: int) -> None:
        for _ in range(count):
            await acall("list_items", LIST_ITEMS, codec="json_body")

    await asyncio.gather(*(caller(warmup // concurrency + 1) for _ in range(concurrency)))
    per_task = calls // concurrency
    meter.start()
    await asyncio.gather(*(caller(per_task) for _ in range(concurrency)))
    return meter.stop(per_task * concurrency)


def run_sync(client: MoltClient, meter: Meter, calls: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        client.call("list_items", LIST_ITEMS, codec="json_body")
    meter.start()
    for _ in range(calls):
        client.call("list_items", LIST_ITEMS, codec="json_body")
    return meter.stop(calls)


def show(label: str, row: dict[str, float]) -> None:
    print(
        f"| {label} | {row['wall_us']:.1f} | {row['client_cpu_us']:.1f} | {row['worker_cpu_us']:.1f} | "
        f"{row['loop_vol']:.2f} / {row['loop_invol']:.2f} | {row['reader_vol']:.2f} / {row['reader_invol']:.2f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=str(REPO / "target" / "release" / "molt_worker"))
    parser.add_argument("--exports", default=str(REPO / "molt_exports.json"))
    parser.add_argument("--calls", type=int, default=20_000, help="measured calls per row")
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="tasks on the loop")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--no-sync", action="store_true", help="skip the client.call row")
    args = parser.parse_args()

    client = MoltClient(worker_cmd=[args.worker], exports=args.exports, transport="shm", strict_shm=True)
    client.start()
    worker_pid = client.worker_pid
    assert worker_pid is not None
    meter = Meter(worker_pid)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; loop {args.loop}; {args.calls} calls per row")
    print("| run | wall µs/call | client CPU µs/call | worker CPU µs/call | loop switches vol / invol per call "
          "| reader switches vol / invol per call |")
    print("|---|---:|---:|---:|---:|---:|")
    try:
        if not args.no_sync:
            show("call (sync)", run_sync(client, meter, args.calls, args.warmup))
        for concurrency in args.concurrency:
            work = run_async(client, meter, args.calls, concurrency, args.warmup)
            if args.loop == "uvloop":
                import uvloop

                row = uvloop.run(work)
            else:
                row = asyncio.run(work)
            show(f"acall, {concurrency} task(s)", row)
    finally:
        client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"client max RSS {usage.ru_maxrss / 1024:.0f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
