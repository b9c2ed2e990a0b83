"""Fixtures: clients talking to the real molt_worker binary, one per transport."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from molt_accel import MoltClient

REPO = Path(__file__).resolve().parents[2]
WORKER_BIN = Path(os.environ.get("MOLT_WORKER_BIN") or REPO / "target" / "debug" / "molt_worker")
TEST_EXPORTS = REPO / "molt_exports.test.json"
# Bounds that only detect hangs; none of them is a performance assertion.
HANG_BOUND_S = 10.0


def worker_cmd(*extra: str) -> list[str]:
    if not WORKER_BIN.is_file():
        pytest.fail(f"molt_worker not built at {WORKER_BIN}: run `cargo build -p molt-worker` or set MOLT_WORKER_BIN")
    return [str(WORKER_BIN), *extra]


def wait_until(condition: Callable[[], object], what: str, bound_s: float = HANG_BOUND_S) -> None:
    """Polls ``condition`` until true; fails the test if it is still false after ``bound_s``."""
    give_up = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.002)


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer exists, not even as a zombie (it was reaped)."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def one_spin_manifest(tmp_path: Path) -> Path:
    """The test manifest with ``spin`` limited to one call at a time: a second spin call is
    answered Busy as soon as the worker reads it, whatever the scheduling."""
    manifest = json.loads(TEST_EXPORTS.read_text())
    manifest["entries"]["spin"]["max_concurrency"] = 1
    path = tmp_path / "one_spin.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture(params=["stdio"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every transport the suite runs against; a new transport adds its name here."""
    return request.param


MakeClient = Callable[..., MoltClient]


@pytest.fixture
def make_client(transport: str) -> Iterator[MakeClient]:
    """Builds clients of the test worker (extra worker flags via ``worker_args``), closing them
    and resuming any worker a test stopped."""
    clients: list[MoltClient] = []

    def make(*, worker_args: tuple[str, ...] = (), **options: object) -> MoltClient:
        options.setdefault("worker_cmd", worker_cmd(*worker_args))
        options.setdefault("exports", str(TEST_EXPORTS))
        client = MoltClient(transport=transport, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        pid = client.worker_pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> MoltClient:
    return make_client()
