#!/usr/bin/env python3
"""Serve the demo the way production would, on 127.0.0.1 only, until interrupted.

- gunicorn, sync workers (one per core), on PORT: `/baseline`, `/offload`, the compute pair
  and `/healthz`.
- uvicorn (ASGI, one worker process per core, started by `asgi_serve.py` so that keep-alive
  connections get TCP_NODELAY) on PORT+1: `/offload_async` (every other endpoint answers
  there too).
- `molt_worker`: with `--transport shm`, one shared worker started here with `--socket` in a
  private temporary directory (0700); every Django process attaches to it and gets its own
  segment. With `--transport stdio`, every Django process spawns its own worker through the
  client on its first offloaded call (a pipe cannot be shared between processes).

`make serve` runs this in the foreground (PORT=8000 by default) until SIGINT, SIGTERM or SIGHUP. The benchmark runner imports
`DemoServer` and runs the same thing around its load steps. Every child is started in its own
process group and is stopped (SIGTERM, then SIGKILL after a grace period) on exit, together
with any worker the Django processes spawned.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from procstat import descendants, process_name

REPO_ROOT = Path(__file__).resolve().parents[2]
DJANGO_DIR = REPO_ROOT / "demo" / "django_app"
sys.path.insert(0, str(DJANGO_DIR))
# The shared worker's rings and frames are the ones the demo's settings give spawned workers.
from demo_site.ring_sizes import WORKER_ARGS  # noqa: E402

#: Items seeded into the demo's database (`MOLT_DEMO_ITEMS` overrides it).
SEED_ITEMS = 1_000_000
DEFAULT_WORKER_BIN = REPO_ROOT / "target" / "release" / "molt_worker"
DEFAULT_EXPORTS = REPO_ROOT / "molt_exports.json"
WORKER_PROCESS_NAME = "molt_worker"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


def shm_available(worker_bin: Path) -> bool:
    """True when both this build of the worker (`--socket`) and the installed client have the
    shared-memory transport."""
    from molt_accel import MoltClient

    try:
        help_text = subprocess.run(
            [str(worker_bin), "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return False
    if "--socket" not in help_text.stdout + help_text.stderr:
        return False
    try:
        # Construction only checks the configuration (the transport must be registered); the
        # worker is not started.
        MoltClient(worker_cmd=[str(worker_bin)], transport="shm", strict_shm=True).close()
    except ValueError:
        return False
    return True


class DemoServer:
    """gunicorn + uvicorn (+ one shared `molt_worker` for shm), started and stopped as one."""

    def __init__(
        self,
        *,
        port: int,
        transport: str,
        workers: int,
        worker_bin: Path = DEFAULT_WORKER_BIN,
        exports: Path = DEFAULT_EXPORTS,
        metrics_path: Path | None = None,
        log_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`extra_env` is added to the environment of every process started here, the shared
        worker's included (the fake-database cost knobs are read by the worker)."""
        if transport not in ("stdio", "shm"):
            raise ValueError(f"transport must be 'stdio' or 'shm', not {transport!r}")
        self.port = port
        self.async_port = port + 1
        self.transport = transport
        self.workers = workers
        # Absolute: the processes run in the Django project's directory.
        self.worker_bin = worker_bin.resolve()
        self.exports = exports.resolve()
        self.metrics_path = metrics_path
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.socket_path: Path | None = None
        self._private_dir: Path | None = None
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._log_files: list[IO[bytes]] = []
        self.worker_process: subprocess.Popen[bytes] | None = None
        self.gunicorn_process: subprocess.Popen[bytes] | None = None
        self.uvicorn_process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> DemoServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Starts every process and returns once both HTTP servers answer `/healthz`."""
        self._private_dir = Path(tempfile.mkdtemp(prefix="molt-serve-"))
        env = self._django_env()
        prepare_database(env)
        if self.transport == "shm":
            self.socket_path = self._private_dir / "worker.sock"
            self.worker_process = self._spawn(
                "molt_worker",
                [str(self.worker_bin), "--socket", str(self.socket_path), "--exports", str(self.exports), *WORKER_ARGS],
                env={**os.environ, **self.extra_env},
            )
            self._wait_for_socket()
            env["MOLT_SOCKET"] = str(self.socket_path)
        self.gunicorn_process = self._spawn(
            "gunicorn",
            [
                sys.executable, "-m", "gunicorn", "demo_site.wsgi:application",
                "--chdir", str(DJANGO_DIR),
                "--worker-class", "sync",
                "--workers", str(self.workers),
                "--bind", f"127.0.0.1:{self.port}",
                # The load generator opens up to 64 connections at once; the default backlog
                # would be enough, a larger one keeps SYN retries out of the tail latency.
                "--backlog", "2048",
                "--timeout", "120",
                "--graceful-timeout", str(int(STOP_GRACE_S)),
                "--log-level", "warning",
            ],
            env=env,
        )
        self.uvicorn_process = self._spawn(
            "uvicorn",
            [
                sys.executable, str(Path(__file__).with_name("asgi_serve.py")), "demo_site.asgi:application",
                "--app-dir", str(DJANGO_DIR),
                "--host", "127.0.0.1",
                "--port", str(self.async_port),
                "--workers", str(self.workers),
            ],
            env=env,
        )
        self._wait_until_ready(self.port)
        self._wait_until_ready(self.async_port)

    def stop(self) -> None:
        """Stops every child and whatever they spawned; removes the private directory."""
        spawned = {
            pid: process_name(pid)
            for pid in descendants(child.pid for _, child in self._children if child.poll() is None)
        }
        for _, child in reversed(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for _, child in reversed(self._children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        # Workers spawned by Django processes live in their parent's process group and got the
        # signal with it; anything that moved elsewhere is ended here by its recorded pid, if
        # that pid still names the same program (not a new process that reused the number).
        for pid, name in spawned.items():
            if name and process_name(pid) == name:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._children.clear()
        for log_file in self._log_files:
            log_file.close()
        self._log_files.clear()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    # -- what the benchmark samples ----------------------------------------------------------

    def django_pids(self) -> list[int]:
        """Every gunicorn and uvicorn process (masters and workers), not the molt workers."""
        roots = [p.pid for p in (self.gunicorn_process, self.uvicorn_process) if p is not None]
        return [pid for pid in descendants(roots) if process_name(pid) != WORKER_PROCESS_NAME]

    def gunicorn_pids(self) -> list[int]:
        """The gunicorn master and its sync workers."""
        if self.gunicorn_process is None:
            return []
        return [
            pid for pid in descendants([self.gunicorn_process.pid]) if process_name(pid) != WORKER_PROCESS_NAME
        ]

    def uvicorn_pids(self) -> list[int]:
        """The uvicorn supervisor and its worker processes."""
        if self.uvicorn_process is None:
            return []
        return [
            pid for pid in descendants([self.uvicorn_process.pid]) if process_name(pid) != WORKER_PROCESS_NAME
        ]

    def worker_pids(self) -> list[int]:
        """The shared shm worker, or the stdio workers the Django processes spawned."""
        roots = [p.pid for p in (self.worker_process, self.gunicorn_process, self.uvicorn_process) if p]
        return [pid for pid in descendants(roots) if process_name(pid) == WORKER_PROCESS_NAME]

    def base_url(self, asynchronous: bool = False) -> str:
        """Where the sync (gunicorn) or async (uvicorn) server listens."""
        return f"http://127.0.0.1:{self.async_port if asynchronous else self.port}"

    # -- helpers -----------------------------------------------------------------------------

    def _django_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "demo_site.settings",
                "MOLT_WORKER_BIN": str(self.worker_bin),
                "MOLT_EXPORTS": str(self.exports),
                "MOLT_TRANSPORT": self.transport,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("MOLT_SOCKET", None)
        env.pop("DJANGO_DEBUG", None)
        if self.metrics_path is not None:
            env["MOLT_DEMO_METRICS_PATH"] = str(self.metrics_path)
        else:
            env.pop("MOLT_DEMO_METRICS_PATH", None)
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        output: IO[bytes] | None = None
        if self.log_dir is not None:
            output = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._log_files.append(output)
        with _signals_deferred():
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=DJANGO_DIR,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
            self._children.append((name, process))
        return process

    def all_running(self) -> bool:
        """True while every process started here is alive."""
        return all(child.poll() is None for _, child in self._children)

    def _raise_if_any_exited(self) -> None:
        for name, child in self._children:
            if child.poll() is not None:
                where = f" (see {self.log_dir / (name + '.log')})" if self.log_dir is not None else ""
                raise RuntimeError(f"{name} exited with code {child.returncode} at start-up{where}")

    def _wait_for_socket(self) -> None:
        assert self.socket_path is not None and self.worker_process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.socket_path.exists():
            self._raise_if_any_exited()
            if time.monotonic() > deadline:
                raise RuntimeError(f"molt_worker did not create {self.socket_path} within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.05)

    def _wait_until_ready(self, port: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_problem = "no answer"
        while time.monotonic() < deadline:
            self._raise_if_any_exited()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                body = response.read()
                connection.close()
                if response.status == 200:
                    return
                last_problem = f"/healthz answered {response.status}: {body[:200]!r}"
            except OSError as error:
                last_problem = str(error)
            time.sleep(0.1)
        raise RuntimeError(f"127.0.0.1:{port} not ready within {READY_TIMEOUT_S:.0f} s ({last_problem})")


#: The signals that end a foreground run cleanly: Ctrl-C, a `timeout` or CI limit (SIGTERM),
#: a closed terminal (SIGHUP).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Deferral:
    """Where a stop signal waits while a child is being spawned: a KeyboardInterrupt raised
    inside ``Popen()`` would lose the started child (no object, no pid to stop). Process-wide,
    as signal handlers are; touched only by the main thread, which runs the handlers."""

    depth = 0
    pending: signal.Signals | None = None


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Holds a stop signal that arrives inside the block until the block ends."""
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
    if _Deferral.depth == 0 and _Deferral.pending is not None:
        raise KeyboardInterrupt(_Deferral.pending.name)


@contextlib.contextmanager
def interrupt_as_exit() -> Iterator[None]:
    """Turns every signal of :data:`STOP_SIGNALS` into a KeyboardInterrupt, so that the
    `with DemoServer` blocks unwind and stop every child. SIGINT is set explicitly: a shell
    starting this in the background leaves it ignored. After the first signal the others are
    ignored, so that a second one (a `timeout` that repeats, a terminal sending SIGHUP and
    SIGTERM) cannot cut the clean-up short."""

    def raise_interrupt(signum: int, frame: object) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if _Deferral.depth:
            _Deferral.pending = signal.Signals(signum)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, raise_interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def prepare_database(env: dict[str, str]) -> None:
    """Migrates the database `MOLT_PG_DSN` names and seeds `MOLT_DEMO_ITEMS` items (default
    1,000,000) unless it holds them already; without a database the `/db/*` endpoints answer
    503 and the rest works."""
    if not env.get("MOLT_PG_DSN"):
        print("serve: MOLT_PG_DSN is not set: /db/* will answer 503 (make serve starts a database)", file=sys.stderr)
        return
    manage = [sys.executable, str(DJANGO_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], env=env, check=True)
    rows = env.get("MOLT_DEMO_ITEMS", str(SEED_ITEMS))
    subprocess.run([*manage, "seed_items", "--rows", rows, "--if-needed"], env=env, check=True, stdout=subprocess.DEVNULL)


def default_transport(worker_bin: Path) -> str:
    """shm where this worker build and the client have it, stdio otherwise."""
    return "shm" if shm_available(worker_bin) else "stdio"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--transport", choices=("stdio", "shm"), default=os.environ.get("MOLT_TRANSPORT"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Django processes per server")
    parser.add_argument("--worker-bin", type=Path, default=Path(os.environ.get("MOLT_WORKER_BIN", DEFAULT_WORKER_BIN)))
    parser.add_argument("--exports", type=Path, default=Path(os.environ.get("MOLT_EXPORTS", DEFAULT_EXPORTS)))
    parser.add_argument("--metrics-path", type=Path, default=None, help="per-call metrics JSONL")
    args = parser.parse_args()
    transport = args.transport or default_transport(args.worker_bin)
    server = DemoServer(
        port=args.port,
        transport=transport,
        workers=args.workers,
        worker_bin=args.worker_bin,
        exports=args.exports,
        metrics_path=args.metrics_path,
    )
    with interrupt_as_exit():
        try:
            with server:
                print(
                    f"serving (transport={transport}, {args.workers} Django processes per server):\n"
                    f"  sync  {server.base_url()}/baseline  /offload  /baseline/compute  /offload/compute\n"
                    f"  async {server.base_url(asynchronous=True)}/offload_async\n"
                    "  db    /db/baseline  /db/offload  /db/entry  (?user_id=1..100&limit=50&status=open)\n"
                    "Ctrl-C stops everything.",
                    flush=True,
                )
                while server.all_running():
                    time.sleep(0.5)
                print("a server process exited; stopping the rest", file=sys.stderr)
                return 1
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
            return 0


if __name__ == "__main__":
    sys.exit(main())
