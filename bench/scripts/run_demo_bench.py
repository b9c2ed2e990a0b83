#!/usr/bin/env python3
"""The demo benchmark: `/baseline` against `/offload` and `/offload_async` (and the compute
pair), same requests, same concurrency, one command; beside them the ceiling views
(`/trivial`, `/trivial_async`: Django answering a constant, no work), so that every ratio to
"free" and the per-request overhead of offloading come from the same run. Then the
PostgreSQL endpoints (`/db/*`) and the data path's (`/data/baseline`: pandas,
`/data/inproc`: python polars, `/data/offload`: the worker) on tables of 10k to 1M rows.

For every endpoint × work size × concurrency of the profile: a warm-up, then a fixed-duration
closed-loop step (capacity and latency at that concurrency), sampling the CPU and peak RSS of
the Django processes, the worker and the load tool from /proc, and summarising the worker's
per-call metrics (queue_us, exec_us, queue_depth, client round trip) from the metrics JSONL
the client hooks write. Then, per work size, an open-loop step at the same fixed rate for
every endpoint with latency correction; then the cancellation check (clients that hang up
mid-request, the worker's Cancelled count rising and its CPU going idle); then a breakdown
of where one `/offload` request spends its time.

Writes `bench/results/<UTC date-time>/result.json`, `summary.md` and PNG plots, and prints
the summary. `--profile short` (the default, what `make demo` runs) takes a few minutes, of
which the data steps (18 closed-loop steps, no open-loop ones) take about a minute and a
half; `--profile full` about half an hour by its steps' count. `--only FAMILY ...` runs some
families of steps only. Servers bind 127.0.0.1 only; every step is bounded in time; every
process started is stopped at the end, also on error, Ctrl-C, SIGTERM (a `timeout make
demo`, a CI limit) or SIGHUP: the runner then exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import http.client
import importlib.metadata
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from db_bench import DB_ENDPOINTS, db_cancellation_check, db_url_params, postgres_pids
from loadgen import LoadResult, LoadTool, find_load_tool
from procstat import CLOCK_TICKS_PER_S, ProcessSampler, RoleUsage, descendants, process_name, read_cpu_ticks
from report import cpu_accounting, write_report
from serve import (
    DEFAULT_EXPORTS,
    DEFAULT_WORKER_BIN,
    DJANGO_DIR,
    REPO_ROOT,
    DemoServer,
    default_transport,
    interrupt_as_exit,
)
from worker_metrics import file_size, read_records, summarise

sys.path.insert(0, str(DJANGO_DIR))
from demoapp import contract  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
LIST_ENDPOINTS = ("/baseline", "/offload", "/offload_async")
COMPUTE_ENDPOINTS = ("/baseline/compute", "/offload/compute")
# The data path's summary, three ways (demoapp/tables.py); the work size is the table's rows.
DATA_ENDPOINTS = ("/data/baseline", "/data/inproc", "/data/offload")
DATA_WORK_PARAM = "table_rows"
# Filters the data steps' requests draw from (quantities are 1 to 19).
DATA_MIN_QUANTITIES = (0, 1, 5, 10, 15)
# What Django, the HTTP server and the load tool cost with nothing else to do (sync, async).
CEILING_ENDPOINTS = ("/trivial", "/trivial_async")
ASYNC_ENDPOINTS = ("/offload_async", "/trivial_async")
METRIC_FIELDS = ("queue_us", "exec_us", "queue_depth", "round_trip_us", "encode_us", "decode_us")
# The work parameter of the ceiling steps, which have none.
CEILING_PARAM = "ceiling"
#: The families of steps, in the order they run; `--only` picks some.
FAMILIES = ("ceiling", "list_items", "compute", "db", "data")
URLS_PER_FILE = 256
# Open-loop steps offer every endpoint of a work size the same rate: this share of the lowest
# of their best measured capacities, a load each of them can sustain.
FIXED_RATE_SHARE = 0.5


@dataclass(frozen=True)
class Profile:
    """What one benchmark run covers."""

    name: str
    concurrency: tuple[int, ...]
    rows: tuple[int, ...]
    compute_n: tuple[int, ...]
    #: Page sizes of the PostgreSQL endpoints (`/db/*`).
    db_limits: tuple[int, ...]
    #: Rows of the data path's table (`/data/*`).
    data_rows: tuple[int, ...]
    #: Open-loop steps for the data endpoints too (the short profile leaves them out for time).
    data_fixed_rate: bool
    duration_s: float
    warmup_s: float
    fixed_rate_s: float


PROFILES = {
    "short": Profile("short", concurrency=(1, 32), rows=(200, 20_000), compute_n=(),
                     db_limits=(50, 500, 5000), data_rows=(10_000, 100_000, 1_000_000),
                     data_fixed_rate=False, duration_s=4.0, warmup_s=1.0, fixed_rate_s=3.0),
    "full": Profile("full", concurrency=(1, 8, 32, 64), rows=(0, 200, 2000, 20_000),
                    compute_n=(1000, 20_000, 200_000), db_limits=(50, 500, 5000),
                    data_rows=(10_000, 100_000, 1_000_000), data_fixed_rate=True,
                    duration_s=8.0, warmup_s=2.0, fixed_rate_s=8.0),
}


def narrowed(profile: Profile, args: argparse.Namespace) -> Profile:
    """`profile` with the work sizes, concurrency levels and step length the command line
    asks for instead (a shortened run for comparing two builds)."""
    changes: dict[str, Any] = {}
    if args.rows is not None:
        changes.update(rows=tuple(args.rows), compute_n=(), db_limits=(), data_rows=())
    if args.data_rows is not None:
        changes["data_rows"] = tuple(args.data_rows)
    if args.concurrency is not None:
        changes["concurrency"] = tuple(args.concurrency)
    if args.duration_s is not None:
        changes["duration_s"] = args.duration_s
    if not changes:
        return profile
    return dataclasses.replace(profile, name=f"{profile.name} (narrowed)", **changes)


# -- requests -----------------------------------------------------------------------------


def list_items_url_params(rng: random.Random, rows: int) -> list[dict[str, Any]]:
    """A seeded list of `list_items` queries at one work size: varied users, filters, page
    sizes, and for about a quarter a cursor taken from the previous page's reply."""
    queries: list[dict[str, Any]] = []
    while len(queries) < URLS_PER_FILE:
        params: dict[str, Any] = {"user_id": rng.randint(1, 100_000), "rows": rows}
        if rng.random() < 0.3:
            word = rng.choice(contract.WORDS)
            params["q"] = word[: rng.randint(2, len(word))]
        params["status"] = rng.choice(["all", "all", "open", "closed"])
        params["limit"] = rng.choice([10, 20, 50, 50, 100])
        queries.append(params)
        if rng.random() < 0.25 and len(queries) < URLS_PER_FILE:
            next_cursor = contract.list_items(params)["next_cursor"]
            if next_cursor is not None:
                queries.append({**params, "cursor": next_cursor})
    return queries


def compute_url_params(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """A seeded list of `compute` queries of size `n` with varied seeds and bucket counts."""
    return [
        {"n": n, "seed": rng.randint(0, 2**32), "buckets": rng.choice([10, 16, 50, 100])}
        for _ in range(URLS_PER_FILE)
    ]


def data_url_params(rng: random.Random, rows: int) -> list[dict[str, Any]]:
    """A seeded list of `/data/*` queries on the table of `rows` rows, with varied filters."""
    return [{"rows": rows, "min_quantity": rng.choice(DATA_MIN_QUANTITIES)} for _ in range(URLS_PER_FILE)]


def write_url_file(path: Path, base_url: str, endpoint: str, queries: list[dict[str, Any]]) -> Path:
    path.write_text("".join(f"{base_url}{endpoint}{'?' if query else ''}{urlencode(query)}\n" for query in queries))
    return path


# -- one step -----------------------------------------------------------------------------


def load_tool_pids(tool: LoadTool) -> list[int]:
    return [pid for pid in descendants([os.getpid()]) if process_name(pid) == tool.name]


def per_request_ms(cpu_pct: float, rps: float) -> float | None:
    return cpu_pct / 100.0 * 1000.0 / rps if rps else None


def measure_step(
    *,
    server: DemoServer,
    tool: LoadTool,
    endpoint: str,
    url_file: Path,
    concurrency: int,
    duration_s: float,
    metrics_path: Path,
    rate: float | None = None,
) -> tuple[LoadResult, dict[str, RoleUsage], float, dict[str, Any]]:
    serving = server.uvicorn_pids if endpoint in ASYNC_ENDPOINTS else server.gunicorn_pids
    sampler = ProcessSampler(
        {"django": serving, "worker": server.worker_pids, "load_tool": lambda: load_tool_pids(tool),
         "postgres": postgres_pids}
    )
    metrics_start = file_size(metrics_path)
    sampler.start()
    try:
        result = tool.run(endpoint=endpoint, url_file=url_file, concurrency=concurrency,
                          duration_s=duration_s, rate=rate)
    finally:
        usage = sampler.stop()
    records = read_records(metrics_path, metrics_start, file_size(metrics_path))
    return result, usage, sampler.machine_cpu_pct, summarise(records, METRIC_FIELDS)


def run_record(
    endpoint: str, work_param: str, work: int, concurrency: int, result: LoadResult,
    usage: dict[str, RoleUsage], machine_cpu_pct: float, metrics: dict[str, Any],
) -> dict[str, Any]:
    django, worker, load = usage["django"], usage["worker"], usage["load_tool"]
    ours = django.cpu_pct + worker.cpu_pct + load.cpu_pct
    return {
        "endpoint": endpoint,
        "work_param": work_param,
        "rows": work,
        "concurrency": concurrency,
        "duration_s": round(result.duration_s, 3),
        "requests": result.requests,
        "rps": result.rps,
        "p50_ms": result.latency_ms.get(50.0),
        "p95_ms": result.latency_ms.get(95.0),
        "p99_ms": result.latency_ms.get(99.0),
        "p999_ms": result.latency_ms.get(99.9),
        "max_ms": result.max_ms,
        "latency_percentiles": {f"{p:g}": ms for p, ms in sorted(result.latency_ms.items()) if ms is not None},
        "error_rate": result.error_rate,
        "error_codes": result.error_codes,
        "cpu_pct": django.cpu_pct + worker.cpu_pct,
        "rss_mb": django.rss_mb + worker.rss_mb,
        # Peaks over the step's samples; "start" is the step's first sample, "shm" the shared
        # pages (the rings) inside the peak, counted in both roles.
        "django_rss_start_mb": django.rss_start_mb,
        "worker_rss_start_mb": worker.rss_start_mb,
        "django_shm_mb": django.shm_mb,
        "worker_shm_mb": worker.shm_mb,
        "django_cpu_pct": django.cpu_pct,
        "worker_cpu_pct": worker.cpu_pct,
        "load_tool_cpu_pct": load.cpu_pct,
        # Everything else on the machine during the step (other users' work, the OS, the idle
        # Django server of the other kind): high values mean a disturbed step.
        "other_cpu_pct": max(machine_cpu_pct - ours, 0.0),
        "django_rss_mb": django.rss_mb,
        "worker_rss_mb": worker.rss_mb,
        "django_processes": django.processes,
        "worker_processes": worker.processes,
        "django_cpu_ms_per_request": per_request_ms(django.cpu_pct, result.rps),
        "worker_cpu_ms_per_request": per_request_ms(worker.cpu_pct, result.rps),
        "load_tool_cpu_ms_per_request": per_request_ms(load.cpu_pct, result.rps),
        "postgres_cpu_pct": usage["postgres"].cpu_pct,
        "postgres_cpu_ms_per_request": per_request_ms(usage["postgres"].cpu_pct, result.rps),
        "worker_calls": metrics["calls"],
        "worker_statuses": metrics["statuses"],
        **{key: value for key, value in metrics.items() if key not in ("calls", "statuses")},
    }


def progress(index: int, total: int, record: dict[str, Any], rate: float | None = None) -> None:
    errors = f"{record['error_rate']:.2%}" + (
        f" {record['error_codes']}" if record["error_codes"] else ""
    )
    mode = f"rate={rate:.0f}/s" if rate is not None else f"c={record['concurrency']}"
    print(
        f"[{index:>3}/{total}] {record['endpoint']:<18} {record['work_param']}={record['rows']:<7} {mode:<10} "
        f"{record['rps']:9.1f} req/s  p50 {fmt_ms(record['p50_ms'])}  p99 {fmt_ms(record['p99_ms'])}  "
        f"p99.9 {fmt_ms(record['p999_ms'])}  errors {errors}  cpu django {record['django_cpu_pct']:.0f}% "
        f"worker {record['worker_cpu_pct']:.0f}% load {record['load_tool_cpu_pct']:.0f}% "
        f"other {record['other_cpu_pct']:.0f}%",
        flush=True,
    )


def fmt_ms(value: float | None) -> str:
    return "    –   " if value is None else f"{value:8.2f}"


# -- cancellation check -------------------------------------------------------------------


async def hang_up_after(port: int, target: str, after_s: float) -> None:
    """Sends one GET and closes the connection `after_s` later, before the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(1), timeout=after_s)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def timed_get(port: int, target: str, timeout_s: float) -> tuple[float, int]:
    """One complete GET; returns (seconds, HTTP status)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=timeout_s)
    writer.close()
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0
    return time.perf_counter() - started, status


def worker_cpu_s(server: DemoServer) -> float:
    return sum(read_cpu_ticks(pid) or 0 for pid in server.worker_pids()) / CLOCK_TICKS_PER_S


# The cancellation check runs on its own short-lived server whose worker simulates a slow
# database (CPU burnt per row, in a loop that checks the call's cancellation token), so one
# `/offload_async` request takes long enough to hang up in the middle of it.
CANCEL_CPU_ITERS_PER_ROW = "2000"
CANCEL_ROWS = 200_000
CANCEL_CLIENTS = 8
# Below this much worker CPU per slow call, hanging up mid-call cannot be timed reliably.
CANCEL_MIN_CALL_CPU_S = 0.2


def cancellation_check(*, transport: str, workers: int, port: int, worker_bin: Path, exports: Path,
                       scratch: Path) -> dict[str, Any]:
    """Clients that hang up while `/offload_async` runs a slow call: every call that reached
    the worker must be answered Cancelled, and the worker must stop spending CPU on them."""
    metrics_path = scratch / "cancel-metrics.jsonl"
    slow_env = {"MOLT_FAKE_DB_CPU_ITERS": CANCEL_CPU_ITERS_PER_ROW, "MOLT_TIMEOUT_MS": "60000"}
    with DemoServer(port=port, transport=transport, workers=workers, worker_bin=worker_bin, exports=exports,
                    metrics_path=metrics_path, log_dir=scratch, extra_env=slow_env) as server:
        # One request run to the end: how long the slow call takes and what it costs the worker.
        probe = f"/offload_async?{urlencode({'user_id': 1, 'rows': CANCEL_ROWS, 'limit': 1})}"
        cpu_before_probe = worker_cpu_s(server)
        full_s, status = asyncio.run(timed_get(server.async_port, probe, timeout_s=90))
        call_cpu_s = worker_cpu_s(server) - cpu_before_probe
        if status != 200:
            return {"ok": False, "summary": f"Not run: the slow request answered HTTP {status}."}
        if call_cpu_s < CANCEL_MIN_CALL_CPU_S:
            return {"ok": False, "summary": (
                f"Not run: the slow request cost the worker only {call_cpu_s:.2f} s of CPU, too little to "
                "cut in the middle (is MOLT_FAKE_DB_CPU_ITERS reaching the worker?).")}
        # Late enough that Django has handed the call to the worker, early enough to cut it.
        hang_up_s = min(full_s / 4, 1.0)
        metrics_start = file_size(metrics_path)
        cpu_before = worker_cpu_s(server)
        started = time.perf_counter()

        async def hang_ups() -> None:
            await asyncio.gather(*(
                hang_up_after(server.async_port,
                              f"/offload_async?{urlencode({'user_id': 2 + i, 'rows': CANCEL_ROWS, 'limit': 1})}",
                              hang_up_s)
                for i in range(CANCEL_CLIENTS)
            ))

        asyncio.run(hang_ups())
        # Every call that reached the worker gets exactly one reply; wait (bounded) for them.
        deadline = time.monotonic() + max(full_s * 2, 3.0)
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            records = read_records(metrics_path, metrics_start, file_size(metrics_path))
            if len(records) >= CANCEL_CLIENTS:
                break
            time.sleep(0.05)
        spent_s = worker_cpu_s(server) - cpu_before
        elapsed_s = time.perf_counter() - started
    statuses = summarise(records, ())["statuses"]
    reached = len(records)
    cancelled = statuses.get("Cancelled", 0)
    would_have_s = call_cpu_s * reached
    ok = reached > 0 and cancelled == reached and spent_s < 0.5 * would_have_s
    summary = (
        f"{CANCEL_CLIENTS} clients sent `/offload_async` requests that take {full_s * 1000:.0f} ms "
        f"({call_cpu_s:.2f} s of worker CPU) each (rows={CANCEL_ROWS}, MOLT_FAKE_DB_CPU_ITERS="
        f"{CANCEL_CPU_ITERS_PER_ROW}) and hung up after {hang_up_s * 1000:.0f} ms. {reached} of the calls "
        "had reached the worker"
        + (" (Django dropped the others before calling)" if reached < CANCEL_CLIENTS else "")
        + f", and the worker answered {cancelled} of those Cancelled (reply statuses: {statuses}). "
        f"It spent {spent_s:.2f} s "
        f"of CPU in the {elapsed_s:.2f} s from the first request, against {would_have_s:.2f} s had the "
        "calls run to the end. "
        + ("**Pass.**" if ok else "**FAIL**: the work was not cancelled as it should be.")
    )
    return {
        "ok": ok,
        "clients": CANCEL_CLIENTS,
        "request_ms": full_s * 1000,
        "call_worker_cpu_s": call_cpu_s,
        "hang_up_after_ms": hang_up_s * 1000,
        "calls_reached_worker": reached,
        "cancelled_replies": cancelled,
        "reply_statuses": statuses,
        "worker_cpu_s_after_hang_up": spent_s,
        "worker_cpu_s_if_not_cancelled": would_have_s,
        "summary": summary,
    }


# -- breakdown ----------------------------------------------------------------------------


def breakdown(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where one `/offload` request's time goes, at concurrency 1 and the largest work size
    (one request at a time, so nothing is queueing): the HTTP latency the load tool saw split
    into the worker's execution, its queue, the IPC round trip around them, the client's
    encode/decode, and the rest (Django, HTTP, JSON rendering)."""
    single = [run for run in runs if run["endpoint"] == "/offload" and run["concurrency"] == 1]
    if not single:
        return None
    run = max(single, key=lambda run: run["rows"])
    baseline = next((r for r in runs if r["endpoint"] == "/baseline" and r["concurrency"] == 1
                     and r["rows"] == run["rows"]), None)
    needed = ("p50_ms", "round_trip_us_p50", "exec_us_p50", "queue_us_p50", "encode_us_p50", "decode_us_p50")
    if any(run.get(key) is None for key in needed):
        return None
    http_us = run["p50_ms"] * 1000
    parts = {
        "worker exec": run["exec_us_p50"],
        "worker queue": run["queue_us_p50"],
        "IPC round trip (transport, wake-ups)": max(run["round_trip_us_p50"] - run["exec_us_p50"] - run["queue_us_p50"], 0),
        "client encode + decode": run["encode_us_p50"] + run["decode_us_p50"],
    }
    parts["Django + HTTP + JSON (the rest)"] = max(http_us - sum(parts.values()), 0)
    lines = [
        f"Medians at rows={run['rows']}, concurrency 1 (`/offload`, HTTP p50 {http_us:.0f} µs"
        + (f"; `/baseline` p50 {baseline['p50_ms'] * 1000:.0f} µs" if baseline else "") + "):",
        "",
        "| part | µs | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {value:.0f} | {value / http_us:.0%} |" for name, value in parts.items()]
    if run.get("django_cpu_ms_per_request") is not None:
        lines += [
            "",
            "CPU per request at that step: Django "
            f"{run['django_cpu_ms_per_request']:.2f} ms, worker {run['worker_cpu_ms_per_request']:.2f} ms, "
            f"load tool {run['load_tool_cpu_ms_per_request']:.2f} ms (all on the same "
            f"{os.cpu_count()} cores).",
        ]
    return {"rows": run["rows"], "parts_us": parts, "http_p50_us": http_us, "summary": "\n".join(lines)}


# -- provenance ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_mb = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_mb = int(line.split()[1]) // 1024
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "load_average_at_start": list(os.getloadavg()),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "mem_total_mb": mem_total_mb,
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def command_output(argv: list[str]) -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, cwd=REPO_ROOT)
    except OSError:
        return "unknown"
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


def git_info() -> dict[str, Any]:
    return {
        "commit": command_output(["git", "rev-parse", "HEAD"]),
        "dirty": bool(command_output(["git", "status", "--porcelain", "--untracked-files=no"])),
    }


def worker_version(server: DemoServer) -> str:
    """The version the running worker reports through `/healthz` (its `health` entry)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        return str(json.loads(connection.getresponse().read()).get("version", "unknown"))
    except (OSError, ValueError):
        return "unknown"
    finally:
        connection.close()


def versions(tool: LoadTool, worker: str) -> dict[str, str]:
    found = {"molt_worker": worker, tool.name: tool.version, "rustc": command_output(["rustc", "--version"])}
    for package in ("django", "gunicorn", "uvicorn", "msgpack", "molt_accel"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--transport", choices=("stdio", "shm"), default=None,
                        help="default: shm when the worker has it, else stdio")
    parser.add_argument("--load-tool", choices=("oha", "k6"), default=None,
                        help="default: k6 when on PATH, else oha")
    parser.add_argument("--port", type=int, default=18000, help="gunicorn port; uvicorn uses the next one")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Django processes per server")
    parser.add_argument("--worker-bin", type=Path, default=DEFAULT_WORKER_BIN)
    parser.add_argument("--exports", type=Path, default=DEFAULT_EXPORTS)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--out", type=Path, default=None, help="result directory (default: dated, under bench/results)")
    parser.add_argument("--no-cancel-check", action="store_true")
    parser.add_argument("--rows", type=int, nargs="+", default=None,
                        help="list_items work sizes instead of the profile's (and no compute, /db or /data steps)")
    parser.add_argument("--data-rows", type=int, nargs="+", default=None,
                        help="table sizes of the /data steps instead of the profile's")
    parser.add_argument("--only", choices=FAMILIES, nargs="+", default=None,
                        help="run these families of steps only (the checks after them still run)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None,
                        help="concurrency levels instead of the profile's")
    parser.add_argument("--duration-s", type=float, default=None, help="closed-loop step length instead of the profile's")
    parser.add_argument("--no-fixed-rate", action="store_true", help="skip the open-loop steps")
    args = parser.parse_args()

    profile = narrowed(PROFILES[args.profile], args)
    if not args.worker_bin.exists():
        parser.error(f"{args.worker_bin} does not exist: run `cargo build --release -p molt-demo-worker --bin molt_worker` (make demo does)")
    transport = args.transport or default_transport(args.worker_bin)
    tool = find_load_tool(args.load_tool)
    started_at = dt.datetime.now(dt.UTC)
    out_dir = args.out or RESULTS_DIR / started_at.strftime("%Y-%m-%dT%H-%M-%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="_tmp", dir=RESULTS_DIR))
    metrics_path = scratch / "metrics.jsonl"
    rng = random.Random(args.seed)

    settings = {
        "profile": profile.name,
        "transport": transport,
        "load_tool": tool.name,
        "django_workers": args.workers,
        "sync_server": f"gunicorn, {args.workers} sync workers",
        "async_server": f"uvicorn (uvloop, httptools), {args.workers} workers",
        "concurrency": list(profile.concurrency),
        "rows": list(profile.rows),
        "compute_n": list(profile.compute_n),
        "db_limits": list(profile.db_limits),
        "data_rows": list(profile.data_rows),
        "data_fixed_rate": profile.data_fixed_rate,
        "families": list(args.only or FAMILIES),
        "duration_s": profile.duration_s,
        "warmup_s": profile.warmup_s,
        "fixed_rate_s": profile.fixed_rate_s,
        "fixed_rate_share_of_lowest_capacity": FIXED_RATE_SHARE,
        "urls_per_step": URLS_PER_FILE,
        "seed": args.seed,
        "timeout_ms": int(os.environ.get("MOLT_TIMEOUT_MS", "2000")),
        "fake_db_knobs": {name: os.environ.get(name, "0") for name in
                          ("MOLT_FAKE_DB_DELAY_MS", "MOLT_FAKE_DB_DECODE_US_PER_ROW", "MOLT_FAKE_DB_CPU_ITERS")},
        "exports": str(args.exports.relative_to(REPO_ROOT)) if args.exports.is_relative_to(REPO_ROOT) else str(args.exports),
    }
    # The ceiling first: it needs no warm worker, and every other step is compared with it.
    # Each work size of each family: (family, work parameter, size, endpoints, open-loop too).
    fixed_rate = not args.no_fixed_rate
    plan = [("ceiling", CEILING_PARAM, 0, CEILING_ENDPOINTS, False)]
    plan += [("list_items", "rows", work, LIST_ENDPOINTS, fixed_rate) for work in profile.rows]
    plan += [("compute", "n", work, COMPUTE_ENDPOINTS, fixed_rate) for work in profile.compute_n]
    plan += [("db", "limit", work, DB_ENDPOINTS, fixed_rate) for work in profile.db_limits]
    plan += [("data", DATA_WORK_PARAM, work, DATA_ENDPOINTS, fixed_rate and profile.data_fixed_rate)
             for work in profile.data_rows]
    families = [planned[1:] for planned in plan if args.only is None or planned[0] in args.only]
    total = sum(
        len(endpoints) * len(profile.concurrency) + (len(endpoints) if with_fixed_rate else 0)
        for _, _, endpoints, with_fixed_rate in families
    )
    print(f"molt demo benchmark: profile {profile.name}, transport {transport}, load tool {tool.name} "
          f"({tool.version}), {args.workers} Django processes per server; results in "
          f"{out_dir.relative_to(REPO_ROOT) if out_dir.is_relative_to(REPO_ROOT) else out_dir}", flush=True)

    runs: list[dict[str, Any]] = []
    fixed_rate_runs: list[dict[str, Any]] = []
    step = 0
    try:
        with DemoServer(port=args.port, transport=transport, workers=args.workers, worker_bin=args.worker_bin,
                        exports=args.exports, metrics_path=metrics_path, log_dir=scratch) as server:
            worker = worker_version(server)
            for work_param, work, endpoints, with_fixed_rate in families:
                if work_param == CEILING_PARAM:
                    queries = [{} for _ in range(URLS_PER_FILE)]
                elif work_param == "rows":
                    queries = list_items_url_params(rng, work)
                elif work_param == "n":
                    queries = compute_url_params(rng, work)
                elif work_param == DATA_WORK_PARAM:
                    queries = data_url_params(rng, work)
                else:
                    queries = db_url_params(rng, work, URLS_PER_FILE)
                url_files = {
                    endpoint: write_url_file(
                        scratch / f"urls{endpoint.replace('/', '_')}_{work}.txt",
                        server.base_url(asynchronous=endpoint in ASYNC_ENDPOINTS), endpoint, queries)
                    for endpoint in endpoints
                }
                best_rps = {endpoint: 0.0 for endpoint in endpoints}
                for concurrency in profile.concurrency:
                    # Every Django process builds a data table on its first request for it, which
                    # a step must not measure; gunicorn's sync workers take turns on the listening
                    # socket, so a warm-up of one connection may reach one of them only.
                    warmup_concurrency = max(profile.concurrency) if work_param == DATA_WORK_PARAM else concurrency
                    # Endpoints alternate within a concurrency level so drift hits them alike.
                    for endpoint in endpoints:
                        step += 1
                        tool.run(endpoint=endpoint, url_file=url_files[endpoint], concurrency=warmup_concurrency,
                                 duration_s=profile.warmup_s)
                        result, usage, machine_cpu, metrics = measure_step(
                            server=server, tool=tool, endpoint=endpoint, url_file=url_files[endpoint],
                            concurrency=concurrency, duration_s=profile.duration_s, metrics_path=metrics_path)
                        record = run_record(endpoint, work_param, work, concurrency, result, usage, machine_cpu,
                                            metrics)
                        runs.append(record)
                        progress(step, total, record)
                        best_rps[endpoint] = max(best_rps[endpoint], result.rps)
                if not with_fixed_rate:
                    continue
                rate = max(round(min(best_rps.values()) * FIXED_RATE_SHARE, 1), 1.0)
                for endpoint in endpoints:
                    step += 1
                    connections = max(profile.concurrency)
                    result, usage, machine_cpu, metrics = measure_step(
                        server=server, tool=tool, endpoint=endpoint, url_file=url_files[endpoint],
                        concurrency=connections, duration_s=profile.fixed_rate_s, metrics_path=metrics_path,
                        rate=rate)
                    record = run_record(endpoint, work_param, work, connections, result, usage, machine_cpu,
                                        metrics)
                    record["rate"] = rate
                    fixed_rate_runs.append(record)
                    progress(step, total, record, rate=rate)
        cancellation = None
        if not args.no_cancel_check:
            print("cancellation check ...", flush=True)
            cancellation = cancellation_check(transport=transport, workers=args.workers, port=args.port,
                                              worker_bin=args.worker_bin, exports=args.exports, scratch=scratch)
            print(cancellation["summary"], flush=True)
            db_cancel = db_cancellation_check(args.worker_bin.with_name("molt_worker_test"),
                                              REPO_ROOT / "molt_exports.test.json")
            if db_cancel is not None:
                cancellation["postgres"] = db_cancel
                cancellation["summary"] += "\n\n" + db_cancel["summary"]
                print(db_cancel["summary"], flush=True)
    except BaseException:
        print(f"benchmark failed; server logs kept in {scratch}", file=sys.stderr)
        raise

    result = {
        "schema": 1,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_info(),
        "versions": versions(tool, worker),
        "settings": settings,
        "runs": runs,
        "fixed_rate_runs": fixed_rate_runs,
        "cancellation": cancellation,
        "breakdown": breakdown(runs),
        "cpu_per_request": cpu_accounting(runs),
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    summary = write_report(out_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(summary)
    return 0 if cancellation is None or cancellation["ok"] else 1


def run_until_stopped() -> int:
    """:func:`main`, with SIGINT, SIGTERM and SIGHUP unwinding it (every server it started is
    stopped on the way out) instead of killing it on the spot."""
    with interrupt_as_exit():
        try:
            return main()
        except KeyboardInterrupt as stop:
            print(f"benchmark stopped ({stop.args[0] if stop.args else 'SIGINT'})", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(run_until_stopped())
