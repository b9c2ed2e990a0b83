"""Test helpers: the real worker, started once and attached to over shared memory, for pytest
and for ``manage.py test``.

pytest (the plugin :mod:`molt_accel.pytest_plugin`, loaded by the ``pytest11`` entry point)::

    def test_items(molt_attached, client):        # pytest-django's client, or Django's own
        assert client.get("/items?user_id=1").status_code == 200

- ``molt_worker`` (session scope): a :class:`WorkerProcess` started once per test session
  from ``MOLT_ACCEL`` (``WORKER_CMD``, ``EXPORTS``), listening on a socket in a private
  temporary directory; stopped at the end of the session.
- ``molt_attached``: ``MOLT_ACCEL`` overridden for one test so that every ``@molt_offload``
  view and :func:`~molt_accel.django.get_client` attach to that worker
  (``TRANSPORT="shm"``, ``SOCKET``, ``STRICT_SHM=True``).

``manage.py test``: mix :class:`MoltWorkerMixin` into a ``SimpleTestCase`` or ``TestCase``; the
worker is started once per process (:func:`shared_worker`) and stopped at exit.

Isolation: ``override_settings(MOLT_ACCEL=...)`` closes the per-process clients when it is
entered and when it is left (``molt_accel.django`` listens to ``setting_changed``), so each
test gets clients and worker connections of its own, and a client from one test is never seen
by the next. The worker process is shared: its counters and whatever state its entries keep
carry over, and a test that stops or kills it should start a :class:`WorkerProcess` of its own.

Importing this module imports neither Django nor pytest: the plugin is loaded in every pytest
session of the environment, Django projects or not, and ``manage.py test`` needs no pytest.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ._client import MoltClient
from ._exceptions import MoltError

__all__ = ["WorkerProcess", "shared_worker", "MoltWorkerMixin"]

#: How long a new worker gets to accept a connection and answer a ping.
DEFAULT_START_TIMEOUT_S = 10.0


class WorkerProcess:
    """A worker process listening on a unix socket, started from ``MOLT_ACCEL`` (or from an
    explicit ``command``, the program and its arguments without ``--socket``).

    ``start()`` returns once the worker answers a ping over shared memory; ``stop()`` sends
    SIGTERM and waits. Its stderr goes to ``log_path`` (``RUST_LOG=warn`` unless set).
    """

    def __init__(self, command: Sequence[str] | None = None, *, directory: str | os.PathLike[str] | None = None,
                 extra_args: Sequence[str] = (), start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> None:
        self._own_directory = directory is None
        self.directory = Path(directory if directory is not None else tempfile.mkdtemp(prefix="molt-test-"))
        self.socket = str(self.directory / "worker.sock")
        self.log_path = self.directory / "worker.log"
        if command is None:
            from .django import attached_worker_command

            self.command = attached_worker_command(self.socket, extra_args)
        else:
            self.command = [*command, "--socket", self.socket, *extra_args]
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> WorkerProcess:
        if self._process is not None:
            raise RuntimeError("the worker is already started")
        env = {**os.environ}
        env.setdefault("RUST_LOG", "warn")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        give_up = time.monotonic() + self.start_timeout_s
        last_error: MoltError | None = None
        while time.monotonic() < give_up:
            if self._process.poll() is not None:
                raise RuntimeError(f"the worker exited with {self._process.returncode} at start-up: {self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    with MoltClient(transport="shm", socket=self.socket, strict_shm=True) as client:
                        client.ping(timeout_ms=1000)
                    return self
                except MoltError as exc:
                    last_error = exc
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"the worker did not answer within {self.start_timeout_s} s ({last_error}): {self.log_tail()}")

    def stop(self) -> None:
        """Stops the worker (SIGTERM, then SIGKILL after 10 s) and removes its directory if
        this object made it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def settings(self, base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
        """``MOLT_ACCEL`` (or ``base``) changed to attach to this worker, then ``changes``."""
        if base is None:
            from django.conf import settings

            base = dict(getattr(settings, "MOLT_ACCEL", {}))
        return {**base, "TRANSPORT": "shm", "SOCKET": self.socket, "STRICT_SHM": True, **changes}

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


_shared: WorkerProcess | None = None
_shared_lock = threading.Lock()


def shared_worker() -> WorkerProcess:
    """This process's worker for tests, started from ``MOLT_ACCEL`` on first use and stopped at
    exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            worker = WorkerProcess().start()
            atexit.register(worker.stop)
            _shared = worker
        return _shared


class MoltWorkerMixin:
    """For ``manage.py test``: each test of the class runs with ``MOLT_ACCEL`` attached to
    :func:`shared_worker`, available as ``self.molt_worker``. Mix it in before the
    ``TestCase`` class: ``class ItemsTests(MoltWorkerMixin, SimpleTestCase)``."""

    molt_worker: WorkerProcess

    def setUp(self) -> None:
        from django.test import override_settings

        super().setUp()  # type: ignore[misc]
        self.molt_worker = shared_worker()
        override = override_settings(MOLT_ACCEL=self.molt_worker.settings())
        override.enable()
        self.addCleanup(override.disable)  # type: ignore[attr-defined]
