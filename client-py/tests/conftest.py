"""Fixtures: clients talking to the real molt_worker binary, one per transport."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from molt_accel import MoltClient
from molt_client_support import TEST_EXPORTS, MakeClient, worker_cmd


@pytest.fixture
def one_spin_manifest(tmp_path: Path) -> Path:
    """The test manifest with ``spin`` limited to one call at a time: a second spin call is
    answered Busy as soon as the worker reads it, whatever the scheduling."""
    manifest = json.loads(TEST_EXPORTS.read_text())
    manifest["entries"]["spin"]["max_concurrency"] = 1
    path = tmp_path / "one_spin.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture(params=["stdio", "shm"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every transport the suite runs against; a new transport adds its name here."""
    return request.param


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
