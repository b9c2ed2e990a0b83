"""One attached worker, N client processes: calls/s, worker RSS and threads (docs/deploy.md).

Starts `--worker-bin --socket` in a private directory, then for each N in `--processes` forks N
processes that each attach a MoltClient over shared memory and call `echo` (64 B msgpack) in a
closed loop for `--seconds`; prints total calls/s and the worker's RSS and thread count while
the N connections are open. It measures the IPC ceiling of one worker, not Django: each call is
what a `@molt_offload` view adds around its own work.

    .venv/bin/python bench/scripts/attached_scale.py --worker-bin target/release/molt_worker
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "client-py" / "python"))

from molt_accel import MoltClient  # noqa: E402
from molt_accel.testing import WorkerProcess  # noqa: E402


def _caller(socket: str, seconds: float, start: Event, out: multiprocessing.Queue[int]) -> None:
    with MoltClient(transport="shm", socket=socket, strict_shm=True) as client:
        client.ping()
        start.wait()
        calls = 0
        payload = {"x": "y" * 48}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            client.call("echo", payload, timeout_ms=5000)
            calls += 1
        out.put(calls)


def _status(pid: int) -> tuple[int, int]:
    rss_kib = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss_kib, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-bin", required=True)
    parser.add_argument("--processes", default="2,8,32")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with WorkerProcess([args.worker_bin]) as worker:
        assert worker.pid is not None
        idle_rss, idle_threads = _status(worker.pid)
        print(f"idle worker: RSS {idle_rss / 1024:.1f} MiB, {idle_threads} threads")
        for count in (int(n) for n in args.processes.split(",")):
            start = multiprocessing.Event()
            out: multiprocessing.Queue[int] = multiprocessing.Queue()
            procs = [multiprocessing.Process(target=_caller, args=(worker.socket, args.seconds, start, out)) for _ in range(count)]
            for proc in procs:
                proc.start()
            time.sleep(1.0)  # every client attached
            start.set()
            time.sleep(args.seconds / 2)
            rss, threads = _status(worker.pid)
            total = sum(out.get(timeout=args.seconds + 60) for _ in procs)
            for proc in procs:
                proc.join()
            print(
                f"{count:3d} processes: {total / args.seconds:9.0f} calls/s, worker RSS {rss / 1024:.1f} MiB "
                f"(+{(rss - idle_rss) / 1024 / count:.2f} MiB per connection), {threads} threads"
            )


if __name__ == "__main__":
    os.environ.setdefault("RUST_LOG", "warn")
    main()
