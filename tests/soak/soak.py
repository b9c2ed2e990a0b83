#!/usr/bin/env python3
"""Soak: mixed load on one worker for a set time, watching for slow leaks.

    python tests/soak/soak.py --duration 1800 [--transport shm] [--django] [--out soak.json]

Caller threads share one MoltClient and loop over a mix: echo, list_items pages (following
cursors), compute, short sleeps, calls that time out (and are cancelled), invalid payloads,
and pings, with a little think time so the load stays bounded on a small machine.

With --django, the demo also runs as `bench/scripts/serve.py` serves it, on 127.0.0.1 only:
gunicorn's sync workers (and uvicorn's) attached to one shared worker over shm, and HTTP
threads call its offloaded endpoints (list_items pages, compute, the async page) over
keep-alive connections beside the client's mix. Everything it started is stopped at the end,
also on SIGINT, SIGTERM or SIGHUP.

Every --sample-every seconds the resident set, open descriptors and threads of every process
are sampled from /proc: the client's worker and this process, and with --django the gunicorn
master and each of its workers, the uvicorn supervisor and each of its workers, and the
shared worker. After the warm-up (--warmup-fraction of the run), the median of the first three
samples is the baseline and the median of the last three the end; the run fails (exit 1) if
any process's end exceeds its baseline by more than the tolerance (RSS: the larger of
--rss-tolerance-pct and --rss-tolerance-kb; descriptors and threads: --count-tolerance), if a
process was replaced (it died), or if any call failed in a way the mix does not expect. The
summary (start and end of every process, every sample too) goes to --out as JSON and its gist
to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import random
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench" / "scripts"))

from molt_accel import InvalidInput, MoltClient, MoltError, Timeout  # noqa: E402
from reliability_support import TEST_EXPORTS, WORKER_BIN, fd_count, status_value  # noqa: E402
from serve import DemoServer, interrupt_as_exit  # noqa: E402

#: The demo's worker (its entries, not the test manifest's) for --django: the debug build
#: that `make build` makes, as the client's own worker is.
DEMO_WORKER_BIN = REPO / "target" / "debug" / "molt_worker"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, required=True, help="seconds of load")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=4, help="caller threads")
    parser.add_argument("--think-ms", type=float, default=2.0, help="pause between a thread's calls")
    parser.add_argument("--rss-tolerance-pct", type=float, default=10.0)
    parser.add_argument("--rss-tolerance-kb", type=int, default=16 * 1024)
    parser.add_argument("--count-tolerance", type=int, default=2, help="extra fds or threads allowed")
    parser.add_argument("--worker", default=str(WORKER_BIN))
    parser.add_argument("--transport", default="stdio", help="stdio or shm")
    parser.add_argument("--django", action="store_true", help="also soak the demo under gunicorn over shm")
    parser.add_argument("--django-workers", type=int, default=2, help="gunicorn (and uvicorn) worker processes")
    parser.add_argument("--http-threads", type=int, default=2, help="threads calling the demo's endpoints")
    parser.add_argument("--demo-worker", type=Path, default=DEMO_WORKER_BIN)
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def one_call(client: MoltClient, rng: random.Random, cursors: dict[int, str | None]) -> str:
    """Makes one call of the mix; returns the outcome's name, checking what it can."""
    pick = rng.random()
    if pick < 0.30:
        payload = {"token": rng.getrandbits(64), "pad": "x" * rng.randint(0, 8000)}
        return "echo" if client.call("echo", payload) == payload else "wrong reply"
    if pick < 0.55:
        user_id = rng.randint(1, 50)
        request: dict[str, object] = {"user_id": user_id, "limit": rng.choice([10, 50, 200])}
        if rng.random() < 0.3:
            request["q"] = rng.choice(["a", "falcon", "ember", "zz"])
        cursor = cursors.get(user_id)
        if cursor is not None and "q" not in request:
            request["cursor"] = cursor
        page = client.call("list_items", request, timeout_ms=5000)
        if "q" not in request:
            cursors[user_id] = page["next_cursor"]
        return "list_items"
    if pick < 0.70:
        n = rng.randint(1_000, 200_000)
        return "compute" if client.call("compute", {"n": n}, timeout_ms=5000)["n"] == n else "wrong reply"
    if pick < 0.80:
        ms = rng.randint(0, 5)
        return "sleep" if client.call("sleep", {"ms": ms}) == {"slept_ms": ms} else "wrong reply"
    if pick < 0.88:
        try:
            client.call("sleep", {"ms": 200}, timeout_ms=5)
        except Timeout:
            return "timeout"
        return "timeout missed"
    if pick < 0.96:
        try:
            client.call("compute", {"n": -1})
        except InvalidInput:
            return "invalid"
        return "invalid accepted"
    client.ping()
    return "ping"


#: The demo's endpoints the HTTP threads call, as (port offset, path and query): offset 0 is
#: gunicorn, 1 uvicorn. Mostly the sync offloaded endpoints, which is what gunicorn serves.
DEMO_REQUESTS = (
    (0, "/offload?user_id={user}&limit={limit}"),
    (0, "/offload?user_id={user}&limit={limit}&q=ember"),
    (0, "/offload/compute?n={n}"),
    (0, "/baseline?user_id={user}&limit={limit}"),
    (1, "/offload_async?user_id={user}&limit={limit}"),
)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``: totals over every malloc arena."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
    ]


def _glibc_mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None  # not glibc, or older than 2.33
    function.restype = _MallInfo2
    return function


_mallinfo2 = _glibc_mallinfo2()

#: What this process's allocators hold, sampled beside its RSS to tell a leak from allocator
#: growth (docs/reliability.md): reported, not checked, since free space inside malloc's
#: arenas is the allocator's business. ``pymalloc_blocks``: objects Python's allocator holds.
ALLOCATOR_KEYS = ("client_malloc_in_use_kb", "client_malloc_free_kb", "client_pymalloc_blocks")


def sample(processes: dict[str, int]) -> dict[str, float]:
    """RSS (kB), descriptors and threads of every process, by role, and this process's
    allocator figures."""
    values: dict[str, float] = {"t": time.monotonic()}
    for role, pid in processes.items():
        values[f"{role}_rss_kb"] = status_value(pid, "VmRSS")
        values[f"{role}_fds"] = fd_count(pid)
        values[f"{role}_threads"] = status_value(pid, "Threads")
    values["client_pymalloc_blocks"] = sys.getallocatedblocks()
    if _mallinfo2 is not None:
        info = _mallinfo2()
        values["client_malloc_in_use_kb"] = info.uordblks // 1024
        values["client_malloc_free_kb"] = info.fordblks // 1024
    return values


def demo_processes(server: DemoServer) -> dict[str, int]:
    """The demo's processes by role: each gunicorn and uvicorn process, the shared worker."""
    assert server.gunicorn_process is not None and server.uvicorn_process is not None
    assert server.worker_process is not None
    processes = {"gunicorn_master": server.gunicorn_process.pid, "uvicorn_master": server.uvicorn_process.pid}
    for server_name, master, pids in (
        ("gunicorn", server.gunicorn_process.pid, server.gunicorn_pids()),
        ("uvicorn", server.uvicorn_process.pid, server.uvicorn_pids()),
    ):
        index = 0
        for pid in sorted(pid for pid in pids if pid != master):
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                # multiprocessing's helper beside uvicorn's spawned workers, not a worker.
                processes[f"{server_name}_resource_tracker"] = pid
            else:
                processes[f"{server_name}_worker_{index}"] = pid
                index += 1
    processes["shared_worker"] = server.worker_process.pid
    return processes


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists()


def free_port_pair() -> int:
    """A loopback port P with P+1 free too (gunicorn on P, uvicorn on P+1), as far as can be
    told before they bind."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise SystemExit("no two adjacent free loopback ports")


@contextlib.contextmanager
def demo_server(args: argparse.Namespace) -> Iterator[DemoServer | None]:
    """The demo served over shm for --django (stopped on leaving), else None."""
    if not args.django:
        yield None
        return
    if not args.demo_worker.is_file():
        raise SystemExit(f"{args.demo_worker} is missing: make build")
    with DemoServer(
        port=free_port_pair(), transport="shm", workers=args.django_workers, worker_bin=args.demo_worker
    ) as server:
        yield server


def http_caller(server: DemoServer, seed: int, stop: threading.Event, record: Callable[[str], None], think_s: float) -> None:
    """Calls the demo's endpoints until ``stop``, over one keep-alive connection per server."""
    rng = random.Random(seed)
    connections: dict[int, http.client.HTTPConnection] = {}
    try:
        while not stop.is_set():
            offset, template = rng.choice(DEMO_REQUESTS)
            path = template.format(user=rng.randint(1, 100), limit=rng.choice([10, 50, 200]), n=rng.randint(1_000, 200_000))
            connection = connections.get(offset)
            if connection is None:
                connection = connections[offset] = http.client.HTTPConnection("127.0.0.1", server.port + offset, timeout=30)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                outcome = "http 200" if response.status == 200 else f"unexpected http {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"unexpected http {type(exc).__name__}"
                connection.close()
                del connections[offset]
            record(outcome)
            time.sleep(think_s)
    finally:
        for connection in connections.values():
            connection.close()


def growth(samples: list[dict[str, float]], warmup_s: float, started: float, args: argparse.Namespace) -> dict:
    after = [s for s in samples if s["t"] - started >= warmup_s]
    if len(after) < 6:
        raise SystemExit(f"too few samples after warm-up ({len(after)}): run longer or sample more often")
    report = {}
    for key in (k for k in samples[0] if k != "t"):
        baseline = statistics.median(s[key] for s in after[:3])
        end = statistics.median(s[key] for s in after[-3:])
        if key in ALLOCATOR_KEYS:
            report[key] = {"start": samples[0][key], "baseline": baseline, "end": end, "growth": end - baseline}
            continue
        if key.endswith("rss_kb"):
            allowed = max(baseline * args.rss_tolerance_pct / 100, args.rss_tolerance_kb)
        else:
            allowed = args.count_tolerance
        report[key] = {
            "start": samples[0][key],
            "baseline": baseline,
            "end": end,
            "max": max(s[key] for s in after),
            "growth": end - baseline,
            "allowed": allowed,
            "ok": end - baseline <= allowed,
        }
    return report


def main() -> int:
    args = parse_args()
    with interrupt_as_exit():
        try:
            with demo_server(args) as server:
                return soak(args, server)
        except KeyboardInterrupt as stopped:
            print(f"soak: stopped ({stopped})", file=sys.stderr)
            return 1


def soak(args: argparse.Namespace, server: DemoServer | None) -> int:
    expected = {"echo", "list_items", "compute", "sleep", "timeout", "invalid", "ping"}
    if server is not None:
        expected.add("http 200")
    outcomes: Counter[str] = Counter()
    outcomes_lock = threading.Lock()
    stop = threading.Event()

    def record(outcome: str) -> None:
        with outcomes_lock:
            outcomes[outcome] += 1

    client = MoltClient(
        worker_cmd=[args.worker],
        exports=TEST_EXPORTS,
        transport=args.transport,
        strict_shm=args.transport == "shm",
        max_restarts=0,
    )
    client.start()
    pid = client.worker_pid
    assert pid is not None
    processes = {"worker": pid, "client": os.getpid()}
    if server is not None:
        processes.update(demo_processes(server))

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        cursors: dict[int, str | None] = {}
        while not stop.is_set():
            try:
                outcome = one_call(client, rng, cursors)
            except MoltError as exc:
                outcome = f"unexpected {type(exc).__name__}"
            record(outcome)
            time.sleep(args.think_ms / 1000)

    def every_process_runs() -> bool:
        return client.worker_pid == pid and all(alive(process) for process in processes.values())

    started = time.monotonic()
    samples = [sample(processes)]
    threads = [threading.Thread(target=caller, args=(seed,), daemon=True) for seed in range(args.threads)]
    if server is not None:
        threads += [
            threading.Thread(target=http_caller, args=(server, seed, stop, record, args.think_ms / 1000), daemon=True)
            for seed in range(args.http_threads)
        ]
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - started < args.duration:
            time.sleep(min(args.sample_every, max(0.0, args.duration - (time.monotonic() - started))))
            if not every_process_runs():
                break
            try:
                samples.append(sample(processes))
            except (FileNotFoundError, ProcessLookupError):
                break  # one ended while being read: reported as gone below
    finally:
        stop.set()
        for thread in threads:
            thread.join(30.0)
        gone = sorted(role for role, process in processes.items() if not alive(process))
        if client.worker_pid != pid and "worker" not in gone:
            gone.append("worker")
        client.close()
    elapsed = time.monotonic() - started
    report = growth(samples, args.duration * args.warmup_fraction, started, args)
    unexpected = {k: v for k, v in outcomes.items() if k not in expected}
    checked = {key: figures for key, figures in report.items() if key not in ALLOCATOR_KEYS}
    passed = all(r["ok"] for r in checked.values()) and not unexpected and not gone
    summary = {
        "transport": args.transport,
        "django": args.django,
        "duration_s": round(elapsed, 1),
        "calls": sum(outcomes.values()),
        "calls_per_s": round(sum(outcomes.values()) / elapsed, 1),
        "outcomes": dict(outcomes),
        "processes": processes,
        "worker_replaced": "worker" in gone,
        "processes_gone": gone,
        "growth_after_warmup": checked,
        "client_allocator": {key: figures for key, figures in report.items() if key in ALLOCATOR_KEYS},
        "passed": passed,
        "samples": [{k: (round(v - started, 1) if k == "t" else v) for k, v in s.items()} for s in samples],
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
