"""Fixtures of the reliability suites (chaos, overload, security) against the real worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability_support import TEST_EXPORTS, WORKER_BIN, SocketWorker, wait_until

# The transports every chaos and security test runs against (each test passes strict_shm, so
# "shm" never quietly falls back to stdio).
TRANSPORTS = ["stdio", "shm"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def worker_bin() -> str:
    if not WORKER_BIN.is_file():
        pytest.fail(f"molt_worker not built at {WORKER_BIN}: run `make build` or set MOLT_WORKER_BIN")
    return str(WORKER_BIN)


@pytest.fixture(scope="session")
def chaos_cycles() -> int:
    """Kill cycles per chaos test: 50 in `make test`, MOLT_CHAOS_CYCLES (1000 in `make chaos`)."""
    return int(os.environ.get("MOLT_CHAOS_CYCLES", "50"))


# A worker that has not created its socket by then is hung, not slow.
_SOCKET_BOUND_S = 5.0


@pytest.fixture
def socket_worker(worker_bin: str) -> Iterator[SocketWorker]:
    """A worker started with ``--socket`` (the test manifest), terminated after the test.

    The socket's directory is the worker's to create, below a base directory that other users
    may traverse (0711): pytest's own tmp_path is private to its user, which would refuse a
    peer of another user before the worker's own checks are reached."""
    base = Path(tempfile.mkdtemp(prefix="molt-test-"))
    base.chmod(0o711)
    socket_path = base / "control" / "worker.sock"
    proc = subprocess.Popen(
        [worker_bin, "--socket", str(socket_path), "--exports", str(TEST_EXPORTS)], stderr=subprocess.DEVNULL
    )
    try:
        assert wait_until(socket_path.exists, _SOCKET_BOUND_S), "the worker never created its socket"
        yield SocketWorker(proc.pid, socket_path)
    finally:
        proc.terminate()
        proc.wait(_SOCKET_BOUND_S)
        shutil.rmtree(base, ignore_errors=True)
