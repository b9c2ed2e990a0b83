"""manage.py molt_worker and molt_status, and the test helpers of molt_accel.testing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import unittest
from pathlib import Path

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.test import Client, SimpleTestCase, override_settings  # noqa: E402

from djangoapp import settings as test_project  # noqa: E402
from molt_accel import MoltClient  # noqa: E402
from molt_accel.django import close_clients, get_client  # noqa: E402
from molt_accel.testing import MoltWorkerMixin, WorkerProcess  # noqa: E402
from molt_client_support import TEST_EXPORTS, WORKER_BIN, wait_until  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def test_project_settings() -> object:
    with override_settings(ROOT_URLCONF="djangoapp.urls_checked", MOLT_ACCEL=test_project.MOLT_ACCEL):
        yield
    close_clients()


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_molt_worker_prints_the_command_it_runs() -> None:
    line = run_command("molt_worker", "--socket", "/run/molt/w.sock", "--print-command", "--", "--log-format", "json")
    assert line.split() == [
        str(WORKER_BIN),
        "--exports",
        str(TEST_EXPORTS),
        "--socket",
        "/run/molt/w.sock",
        "--log-format",
        "json",
    ]


def test_molt_worker_listens_on_the_socket_setting() -> None:
    with override_settings(MOLT_ACCEL={**test_project.MOLT_ACCEL, "TRANSPORT": "shm", "SOCKET": "/run/m/s.sock"}):
        assert run_command("molt_worker", "--print-command").split()[-2:] == ["--socket", "/run/m/s.sock"]


def test_molt_worker_without_a_socket_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="SOCKET"):
        run_command("molt_worker", "--print-command")


def test_molt_worker_becomes_the_worker_and_serves_attached_clients(tmp_path: Path) -> None:
    socket = str(tmp_path / "w.sock")
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "DJANGO_SETTINGS_MODULE": "djangoapp.settings"}
    command = [sys.executable, "-m", "django", "molt_worker", "--socket", socket]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(socket), "the worker listens")
        with MoltClient(transport="shm", socket=socket, strict_shm=True) as client:
            assert client.call("echo", {"x": 1}) == {"x": 1}
        # exec: the command's process is the worker, so a unit's SIGTERM reaches it directly.
        assert os.readlink(f"/proc/{process.pid}/exe") == str(WORKER_BIN.resolve())
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_molt_status_reports_an_attached_worker_and_its_counters() -> None:
    with WorkerProcess() as worker, override_settings(MOLT_ACCEL=worker.settings()):
        assert Client().get("/api/echo", {"x": "1"}).status_code == 200
        assert Client().get("/api/echo", {"x": "2"}).status_code == 200
        report = json.loads(run_command("molt_status", "--json"))
        text = run_command("molt_status")
    assert report["shm"]["ok"] is True
    assert report["shm"]["socket"] == worker.socket
    assert report["shm"]["replies"]["echo"]["Ok"] == 2
    assert text.splitlines()[0] == f"shm: ok (attached at {worker.socket})"
    assert "  echo: Ok 2" in text.splitlines()


def test_molt_status_of_a_spawned_worker() -> None:
    report = json.loads(run_command("molt_status", "--json"))
    assert report["stdio"]["ok"] is True
    assert report["stdio"]["attached"] is False
    assert isinstance(report["stdio"]["pid"], int)


def test_molt_status_exits_1_when_the_worker_is_down(tmp_path: Path) -> None:
    down = {**test_project.MOLT_ACCEL, "TRANSPORT": "shm", "SOCKET": str(tmp_path / "none.sock"), "STRICT_SHM": True}
    out = io.StringIO()
    with override_settings(MOLT_ACCEL=down), pytest.raises(CommandError) as raised:
        call_command("molt_status", stdout=out)
    assert raised.value.returncode == 1
    assert out.getvalue().startswith("shm: DOWN (attached at ")


def test_molt_attached_routes_views_to_the_session_worker(molt_attached: WorkerProcess) -> None:
    assert Client().get("/api/echo", {"x": "1"}).json() == {"x": "1"}
    assert get_client().config.socket == molt_attached.socket


class _AttachedCase(MoltWorkerMixin, SimpleTestCase):
    """Run by the test below through unittest, as ``manage.py test`` runs it."""

    __test__ = False
    clients: list[MoltClient] = []

    def test_first(self) -> None:
        self.assertEqual(Client().get("/api/echo", {"n": "1"}).json(), {"n": "1"})
        self.clients.append(get_client())

    def test_second(self) -> None:
        self.assertEqual(Client().get("/api/echo", {"n": "2"}).json(), {"n": "2"})
        self.clients.append(get_client())


def test_the_mixin_attaches_each_test_with_a_client_of_its_own() -> None:
    _AttachedCase.clients.clear()
    with override_settings(ROOT_URLCONF="djangoapp.urls_checked"):
        result = unittest.TextTestRunner(stream=io.StringIO()).run(
            unittest.defaultTestLoader.loadTestsFromTestCase(_AttachedCase)
        )
    assert result.wasSuccessful(), result.errors + result.failures
    first, second = _AttachedCase.clients
    assert first is not second
    assert first.config.socket == second.config.socket
