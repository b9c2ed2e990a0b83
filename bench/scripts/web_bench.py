#!/usr/bin/env python3
"""molt-web against Django and against bare axum: the example service's list endpoint
(`POST /items`, the `list_items` entry) against Django's `/baseline` (the contract in CPython)
and `/offload` (the same entry in `molt_worker`, over shared memory), and its database page
(`POST /db/items`, `items_page` on molt-db) against Django's `/db/baseline` (the ORM); beside
each, the same entries in a route of bare axum (`bare_axum`, an example of the example
service: no molt-web handler, no layers), whose req/s molt-web's are a share of.

Every endpoint of a family gets the same seeded requests (Django's as query strings, the Rust
services' as the same payloads in JSON bodies, one line per request taken at random by oha)
at each concurrency (default 1, 32, 256): a warm-up, then a fixed-duration closed-loop step,
sampling from /proc the CPU and peak RSS of the processes that serve it (gunicorn's master
and workers for Django, plus the worker for `/offload`; the service's one process) and
PostgreSQL's CPU apart.

The molt-web service and bare axum run with the service's manifest, every entry's
`max_concurrency` raised to the highest concurrency of the run: a step measures serving, not
shedding (at the shipped limits, `/items` at concurrency 256 answers most requests 429 in
microseconds). Their access log is off (`RUST_LOG=warn`), as gunicorn's is.

Writes `bench/results/<UTC date-time>-web/web_result.json` and `summary.md` and prints the
summary. Needs the release builds (`make bench-web` makes them), oha (`make oha`) and
`MOLT_PG_DSN` (`scripts/pgcluster.py run --`; without it the `/db/*` steps are skipped).
Servers bind 127.0.0.1 only; every step is bounded in time; every process started is stopped
at the end, also on error, Ctrl-C, SIGTERM or SIGHUP (the runner then exits with status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from db_bench import db_url_params, postgres_pids
from loadgen import LoadResult, LoadTool, find_load_tool
from procstat import ProcessSampler, descendants, process_name
from run_demo_bench import (
    RESULTS_DIR,
    URLS_PER_FILE,
    git_info,
    list_items_url_params,
    machine_info,
    write_url_file,
)
from serve import DEFAULT_EXPORTS, DEFAULT_WORKER_BIN, REPO_ROOT, DemoServer, _signals_deferred, interrupt_as_exit

RELEASE_DIR = REPO_ROOT / "target" / "release"
SERVICE_BIN = RELEASE_DIR / "molt-web-service"
BARE_AXUM_BIN = RELEASE_DIR / "examples" / "bare_axum"
SERVICE_EXPORTS = REPO_ROOT / "examples" / "web-service" / "exports.json"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
READY_LINE = re.compile(rb"listening on http://(127\.0\.0\.1:\d+)")


@dataclass(frozen=True)
class Endpoint:
    """One column of a family: who serves it and how a request reaches it."""

    label: str
    server: str
    """`django`, `molt-web` or `bare axum`."""
    path: str
    post: bool
    """The payload as a JSON body (the Rust services) or as a query string (Django)."""


LIST_FAMILY = (
    Endpoint("Django /baseline", "django", "/baseline", post=False),
    Endpoint("Django /offload", "django", "/offload", post=False),
    Endpoint("molt-web /items", "molt-web", "/items", post=True),
    Endpoint("bare axum /items", "bare axum", "/items", post=True),
)
DB_FAMILY = (
    Endpoint("Django /db/baseline", "django", "/db/baseline", post=False),
    Endpoint("molt-web /db/items", "molt-web", "/db/items", post=True),
    Endpoint("bare axum /db/items", "bare axum", "/db/items", post=True),
)


class NativeServer:
    """A Rust HTTP server binary on a free loopback port, stopped (SIGTERM, then SIGKILL after
    a grace period) on exit."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name.replace(' ', '_')}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.base_url = ""

    def __enter__(self) -> NativeServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        with _signals_deferred():
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode} (see {self.log_path})")
            found = READY_LINE.search(self.log_path.read_bytes())
            if found:
                self.base_url = f"http://{found.group(1).decode()}"
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen within {READY_TIMEOUT_S:.0f} s (see {self.log_path})")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None and self.process.poll() is None else []


def bench_manifest(path: Path, concurrency: int) -> Path:
    """The service's manifest with every `max_concurrency` at least `concurrency`."""
    manifest = json.loads(SERVICE_EXPORTS.read_text())
    for options in manifest["entries"].values():
        if "max_concurrency" in options:
            options["max_concurrency"] = max(options["max_concurrency"], concurrency)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def write_body_file(path: Path, queries: list[dict[str, Any]]) -> Path:
    """The payloads of `queries`, one JSON body a line (what Django's query strings become)."""
    path.write_text("".join(json.dumps(query, separators=(",", ":")) + "\n" for query in queries))
    return path


def load_tool_pids(tool: LoadTool) -> list[int]:
    return [pid for pid in descendants([os.getpid()]) if process_name(pid) == tool.name]


def measure(
    tool: LoadTool, serving: Callable[[], list[int]], run: Callable[..., LoadResult], duration_s: float,
) -> tuple[LoadResult, dict[str, Any]]:
    """One step of `run` (a load tool run but for its duration), with the CPU and RSS of the
    `serving` processes, PostgreSQL's and the load tool's."""
    sampler = ProcessSampler({"server": serving, "postgres": postgres_pids, "load_tool": lambda: load_tool_pids(tool)})
    sampler.start()
    try:
        result = run(duration_s=duration_s)
    finally:
        usage = sampler.stop()
    return result, {
        "server_cpu_pct": usage["server"].cpu_pct,
        "server_rss_mb": usage["server"].rss_mb,
        "server_processes": usage["server"].processes,
        "postgres_cpu_pct": usage["postgres"].cpu_pct,
        "load_tool_cpu_pct": usage["load_tool"].cpu_pct,
        "other_cpu_pct": max(sampler.machine_cpu_pct - usage["server"].cpu_pct - usage["postgres"].cpu_pct
                             - usage["load_tool"].cpu_pct, 0.0),
    }


def ok_rps(result: LoadResult) -> float:
    """2xx answers per second: an error answered fast must not count as capacity."""
    return (result.requests - result.errors) / result.duration_s if result.duration_s else 0.0


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_table(runs: list[dict[str, Any]], family: str) -> list[str]:
    rows = [run for run in runs if run["family"] == family]
    if not rows:
        return []
    lines = [
        "| endpoint | c | req/s (2xx) | p50 ms | p99 ms | p99.9 ms | errors | server CPU % | server RSS MiB | vs bare axum |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in rows:
        bare = next((other for other in rows if other["server"] == "bare axum"
                     and other["concurrency"] == run["concurrency"]), None)
        ratio = f"{run['ok_rps'] / bare['ok_rps']:.0%}" if bare and bare["ok_rps"] else "–"
        errors = f"{run['error_rate']:.1%}" + (f" {run['error_codes']}" if run["error_codes"] else "")
        lines.append(
            f"| {run['endpoint']} | {run['concurrency']} | {run['ok_rps']:.0f} | {fmt(run['p50_ms'])} | "
            f"{fmt(run['p99_ms'])} | {fmt(run['p999_ms'])} | {errors} | {run['server_cpu_pct']:.0f} | "
            f"{run['server_rss_mb']:.0f} | {ratio} |"
        )
    return lines


def write_summary(out_dir: Path, result: dict[str, Any]) -> str:
    settings = result["settings"]
    machine = result["machine"]
    lines = [
        f"# molt-web against Django and bare axum ({result['started_at']})",
        "",
        f"Commit `{result['git']['commit'][:12]}`{' (with uncommitted changes)' if result['git']['dirty'] else ''}; "
        f"{machine['cores']} cores ({machine['cpu_model']}), load average at start "
        f"{machine['load_average_at_start'][0]:.2f}; {settings['load_tool']}; steps of {settings['duration_s']} s "
        f"after {settings['warmup_s']} s of warm-up; Django: {settings['django']}; molt-web and bare axum: one "
        f"process, one runtime thread per core, max_concurrency raised to {max(settings['concurrency'])}.",
        "",
        "Client, servers and PostgreSQL share the machine: compare rows of one run, not runs. "
        "`vs bare axum`: the row's 2xx req/s over bare axum's at the same concurrency. Server RSS is the peak "
        "of the serving processes' summed VmRSS during the step (Django: gunicorn's master and workers, plus "
        "the worker for `/offload`).",
        "",
        f"## list_items (rows={settings['rows']})",
        "",
        *summary_table(result["runs"], "list"),
    ]
    db_lines = summary_table(result["runs"], "db")
    if db_lines:
        lines += ["", f"## items_page (PostgreSQL, limit={settings['db_limit']})", "", *db_lines]
    else:
        lines += ["", "## items_page", "", "Not run: MOLT_PG_DSN is not set."]
    text = "\n".join(lines) + "\n"
    (out_dir / "summary.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--duration-s", type=float, default=5.0, help="closed-loop step length")
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=200, help="list_items work size")
    parser.add_argument("--db-limit", type=int, default=50, help="items_page page size")
    parser.add_argument("--port", type=int, default=18200,
                        help="gunicorn's port (uvicorn takes the next); the Rust servers take free ones")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Django processes")
    parser.add_argument("--worker-bin", type=Path, default=DEFAULT_WORKER_BIN)
    parser.add_argument("--service-bin", type=Path, default=SERVICE_BIN)
    parser.add_argument("--bare-axum-bin", type=Path, default=BARE_AXUM_BIN)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--out", type=Path, default=None, help="result directory (default: dated, under bench/results)")
    args = parser.parse_args()

    for binary, how in ((args.worker_bin, "-p molt-demo-worker --bin molt_worker"),
                        (args.service_bin, "-p molt-web-service --bin molt-web-service"),
                        (args.bare_axum_bin, "-p molt-web-service --example bare_axum")):
        if not binary.exists():
            parser.error(f"{binary} does not exist: run `cargo build --release {how}` (make bench-web does)")
    tool = find_load_tool("oha")
    with_db = bool(os.environ.get("MOLT_PG_DSN"))
    started_at = dt.datetime.now(dt.UTC)
    out_dir = args.out or RESULTS_DIR / f"{started_at.strftime('%Y-%m-%dT%H-%M-%SZ')}-web"
    out_dir.mkdir(parents=True, exist_ok=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="_tmp", dir=RESULTS_DIR))
    rng = random.Random(args.seed)
    families: list[tuple[str, tuple[Endpoint, ...], list[dict[str, Any]]]] = [
        ("list", LIST_FAMILY, list_items_url_params(rng, args.rows)),
    ]
    if with_db:
        families.append(("db", DB_FAMILY, db_url_params(rng, args.db_limit, URLS_PER_FILE)))
    else:
        print("web_bench: MOLT_PG_DSN is not set: skipping the /db steps (scripts/pgcluster.py run -- ...)",
              file=sys.stderr)
    total = sum(len(endpoints) for _, endpoints, _ in families) * len(args.concurrency)
    manifest = bench_manifest(scratch / "exports.json", max(args.concurrency))
    native_env = {**os.environ, "RUST_LOG": "warn"}
    print(f"molt-web benchmark: {tool.name} ({tool.version}), concurrency {args.concurrency}, "
          f"{args.duration_s} s steps; results in {out_dir}", flush=True)

    runs: list[dict[str, Any]] = []
    try:
        with (
            DemoServer(port=args.port, transport="shm", workers=args.workers, worker_bin=args.worker_bin,
                       exports=DEFAULT_EXPORTS, log_dir=scratch) as django,
            NativeServer("molt-web", [str(args.service_bin), "--listen", "127.0.0.1:0", "--exports", str(manifest)],
                         scratch, native_env) as service,
            NativeServer("bare axum", [str(args.bare_axum_bin), "127.0.0.1:0", "--exports", str(manifest)],
                         scratch, native_env) as bare,
        ):
            base_urls = {"django": django.base_url(), "molt-web": service.base_url, "bare axum": bare.base_url}

            def serving_pids(endpoint: Endpoint) -> Callable[[], list[int]]:
                if endpoint.server == "molt-web":
                    return service.pids
                if endpoint.server == "bare axum":
                    return bare.pids
                if endpoint.path == "/offload":
                    return lambda: django.gunicorn_pids() + django.worker_pids()
                return django.gunicorn_pids

            step = 0
            for family, endpoints, queries in families:
                files: dict[str, tuple[Path, Path | None]] = {}
                for endpoint in endpoints:
                    stem = f"{endpoint.server}{endpoint.path}".replace("/", "_").replace(" ", "_")
                    if endpoint.post:
                        url_file = scratch / f"url_{stem}.txt"
                        url_file.write_text(f"{base_urls[endpoint.server]}{endpoint.path}\n")
                        files[endpoint.label] = (url_file, write_body_file(scratch / f"bodies_{stem}.txt", queries))
                    else:
                        files[endpoint.label] = (
                            write_url_file(scratch / f"urls_{stem}.txt", base_urls["django"], endpoint.path, queries),
                            None)
                for concurrency in args.concurrency:
                    # Endpoints alternate within a concurrency level so drift hits them alike.
                    for endpoint in endpoints:
                        step += 1
                        url_file, bodies = files[endpoint.label]
                        run = functools.partial(tool.run, endpoint=endpoint.path, url_file=url_file,
                                                concurrency=concurrency, post_bodies=bodies)
                        run(duration_s=args.warmup_s)
                        result, usage = measure(tool, serving_pids(endpoint), run, args.duration_s)
                        record = {
                            "family": family,
                            "endpoint": endpoint.label,
                            "server": endpoint.server,
                            "path": endpoint.path,
                            "concurrency": concurrency,
                            "duration_s": round(result.duration_s, 3),
                            "requests": result.requests,
                            "rps": result.rps,
                            "ok_rps": ok_rps(result),
                            "p50_ms": result.latency_ms.get(50.0),
                            "p99_ms": result.latency_ms.get(99.0),
                            "p999_ms": result.latency_ms.get(99.9),
                            "max_ms": result.max_ms,
                            "error_rate": result.error_rate,
                            "error_codes": result.error_codes,
                            **usage,
                        }
                        runs.append(record)
                        print(f"[{step:>2}/{total}] {endpoint.label:<22} c={concurrency:<4} {record['ok_rps']:9.0f} req/s  "
                              f"p50 {fmt(record['p50_ms']):>7}  p99 {fmt(record['p99_ms']):>7}  "
                              f"p99.9 {fmt(record['p999_ms']):>7} ms  errors {record['error_rate']:.1%}  "
                              f"server cpu {usage['server_cpu_pct']:.0f}% rss {usage['server_rss_mb']:.0f} MiB",
                              flush=True)
    except BaseException:
        print(f"benchmark failed; server logs kept in {scratch}", file=sys.stderr)
        raise

    report = {
        "schema": "web-1",
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_info(),
        "settings": {
            "load_tool": tool.version,
            "concurrency": args.concurrency,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "rows": args.rows,
            "db_limit": args.db_limit if with_db else None,
            "django": f"gunicorn, {args.workers} sync workers; /offload over shm",
            "seed": args.seed,
            "requests_per_family": URLS_PER_FILE,
        },
        "runs": runs,
    }
    (out_dir / "web_result.json").write_text(json.dumps(report, indent=2) + "\n")
    summary = write_summary(out_dir, report)
    shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(summary)
    return 0


def run_until_stopped() -> int:
    """:func:`main`, with SIGINT, SIGTERM and SIGHUP unwinding it (every server it started is
    stopped on the way out)."""
    with interrupt_as_exit():
        try:
            return main()
        except KeyboardInterrupt as stop:
            print(f"benchmark stopped ({stop.args[0] if stop.args else 'SIGINT'})", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(run_until_stopped())
