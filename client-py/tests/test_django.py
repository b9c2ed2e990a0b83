"""@molt_offload with Django's test client (sync and async views) and under uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django
import pytest

# Another suite in the same pytest run may have configured Django with its own project first;
# every test below overrides what it relies on (URLs, middleware, MOLT_ACCEL) either way.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402

from molt_client_support import HANG_BOUND_S, in_forked_child, wait_until  # noqa: E402
from molt_accel import (  # noqa: E402
    Busy,
    Cancelled,
    InternalError,
    InvalidInput,
    MoltError,
    NotFound,
    ProtocolError,
    Timeout,
    WorkerUnavailable,
)
from djangoapp import settings as test_project  # noqa: E402
from molt_accel.django import close_clients, error_response, get_client  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
WORKER_CMD: list[str] = test_project.MOLT_ACCEL["WORKER_CMD"]  # type: ignore[assignment]


def molt_settings(**changes: object) -> dict[str, object]:
    return {**test_project.MOLT_ACCEL, **changes}


@pytest.fixture(autouse=True)
def molt_accel_settings(transport: str) -> Iterator[None]:
    """Every test runs on the test project's URLs with the transport under test, and stops its
    worker afterwards."""
    with override_settings(
        ROOT_URLCONF=test_project.ROOT_URLCONF,
        MIDDLEWARE=test_project.MIDDLEWARE,
        MOLT_ACCEL=molt_settings(TRANSPORT=transport),
    ):
        yield
    close_clients()


Get = Callable[..., HttpResponse]


@pytest.fixture(params=["sync", "async"])
def get(request: pytest.FixtureRequest) -> Get:
    """GETs /<flavour>/<path> through the matching view flavour and test client."""
    flavour = request.param

    def get(path: str, **extra: object) -> HttpResponse:
        url = f"/{flavour}/{path}"
        if flavour == "sync":
            return Client().get(url, **extra)
        return asyncio.run(AsyncClient().get(url, **extra))

    return get


def error_of(response: HttpResponse) -> dict[str, str]:
    return json.loads(response.content)["error"]


def test_a_successful_call_returns_the_result_as_json(get: Get) -> None:
    response = get("echo", data={"q": "widgets", "n": "3"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"q": "widgets", "n": "3"}


def test_a_result_that_is_not_a_dict_is_still_json() -> None:
    response = Client().get("/sync/echo_list", data={"a": "1", "b": "2"})
    assert response.status_code == 200
    assert json.loads(response.content) == ["a", "b"]


def test_a_bytes_result_is_returned_as_octet_stream() -> None:
    response = asyncio.run(AsyncClient().post("/async/echo_raw", data=b"\x00raw", content_type="application/x-raw"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response.content == b"\x00raw"


def test_a_response_returned_by_the_view_is_passed_through() -> None:
    refused = asyncio.run(AsyncClient().get("/async/validated"))
    assert refused.status_code == 400 and error_of(refused)["message"] == "user_id is required"
    accepted = asyncio.run(AsyncClient().get("/async/validated", data={"user_id": "7"}))
    assert json.loads(accepted.content) == {"user_id": "7"}


def test_invalid_input_is_400(get: Get) -> None:
    response = get("spin", data={"ms": "soon"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "InvalidInput"


def test_timeout_is_504(get: Get) -> None:
    # One compute thread, kept busy: the sleep call waits in the worker's queue past its
    # deadline, so its reply comes from the worker's deadline timer alone.
    one_thread = [*WORKER_CMD, "--compute-threads", "1"]
    with override_settings(MOLT_ACCEL=molt_settings(WORKER_CMD=one_thread)), ThreadPoolExecutor(1) as pool:
        client = get_client()
        client.start()
        blocker = pool.submit(client.call, "spin", {"ms": 20_000}, timeout_ms=30_000)
        wait_until(lambda: client.in_flight == 1, "the spin call is in flight")
        client.ping()
        response = get("sleep")
        close_clients()  # the worker cancels the blocker on EOF
        assert isinstance(blocker.exception(timeout=HANG_BOUND_S), Cancelled)
    assert response.status_code == 504
    assert error_of(response)["code"] == "Timeout"


def test_an_entry_the_worker_does_not_export_is_500(get: Get) -> None:
    response = get("nope")
    assert response.status_code == 500
    assert error_of(response)["code"] == "NotFound"


def test_an_internal_error_is_500_with_a_safe_message(get: Get) -> None:
    response = get("panic")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "InternalError"
    assert "/" not in error["message"] and "panicked" not in error["message"]


def test_an_unavailable_worker_is_503_with_retry_after(get: Get) -> None:
    with override_settings(MOLT_ACCEL=molt_settings(WORKER_CMD=["/nonexistent/molt_worker"], RETRY_AFTER_S=7)):
        response = get("echo")
    assert response.status_code == 503
    assert response["Retry-After"] == "7"
    error = error_of(response)
    assert error["code"] == "WorkerUnavailable" and "/nonexistent" not in error["message"]


@pytest.mark.parametrize(("busy_status", "expected"), [(None, 429), (503, 503)])
def test_busy_is_429_or_the_configured_status_with_retry_after(
    get: Get, one_spin_manifest: Path, busy_status: int | None, expected: int
) -> None:
    changes: dict[str, object] = {"EXPORTS": str(one_spin_manifest)}
    if busy_status is not None:
        changes["BUSY_STATUS"] = busy_status
    with override_settings(MOLT_ACCEL=molt_settings(**changes)), ThreadPoolExecutor(1) as pool:
        client = get_client()
        client.start()
        running = pool.submit(client.call, "spin", {"ms": 20_000}, timeout_ms=30_000)
        wait_until(lambda: client.in_flight == 1, "the first spin call is in flight")
        client.ping()  # the worker has admitted it: spin is at its concurrency limit
        response = get("spin", data={"ms": "1"})
        close_clients()  # the worker cancels the running spin on EOF
        assert isinstance(running.exception(timeout=HANG_BOUND_S), Cancelled)
    assert response.status_code == expected
    assert response["Retry-After"] == "1"
    assert error_of(response)["code"] == "Busy"


def test_a_call_the_worker_cancels_on_its_own_is_499(get: Get) -> None:
    # SIGTERM makes the worker answer its calls Cancelled and exit. The view's call waits in
    # the queue behind a running one (one compute thread), so no entry races the shutdown.
    one_thread = [*WORKER_CMD, "--compute-threads", "1"]
    with override_settings(MOLT_ACCEL=molt_settings(WORKER_CMD=one_thread)), ThreadPoolExecutor(2) as pool:
        client = get_client()
        client.start()
        pool.submit(client.call, "sleep", {"ms": 10_000}, timeout_ms=20_000)
        wait_until(lambda: client.in_flight == 1, "the sleep call is in flight")
        future = pool.submit(get, "spin", data={"ms": "20000"})
        wait_until(lambda: client.in_flight == 2, "the view's spin call is in flight")
        client.ping()
        os.kill(client.worker_pid, signal.SIGTERM)  # type: ignore[arg-type]
        response = future.result(timeout=HANG_BOUND_S)
    assert response.status_code == 499, response.content
    assert error_of(response)["code"] == "Cancelled"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (WorkerUnavailable("x"), 503),
        (Busy("x"), 429),
        (Timeout("x"), 504),
        (InvalidInput("x"), 400),
        (NotFound("x"), 500),
        (InternalError("x"), 500),
        (ProtocolError("x"), 500),
        (Cancelled("x"), 499),
    ],
)
def test_every_error_kind_has_its_status_and_body(error: MoltError, status: int) -> None:
    response = error_response(error)
    assert response.status_code == status
    assert json.loads(response.content) == {"error": {"code": error.status, "message": "x"}}
    assert ("Retry-After" in response) == (status in (429, 503))


def test_unknown_settings_are_refused() -> None:
    with override_settings(MOLT_ACCEL=molt_settings(TIMEOUT=5)):
        with pytest.raises(ImproperlyConfigured, match="TIMEOUT"):
            get_client()
    with override_settings(MOLT_ACCEL=molt_settings(BUSY_STATUS=418)):
        with pytest.raises(ImproperlyConfigured, match="BUSY_STATUS"):
            get_client()


def test_one_client_per_process_and_a_new_one_after_a_settings_change() -> None:
    first = get_client()
    assert get_client() is first
    with override_settings(MOLT_ACCEL=molt_settings(TIMEOUT_MS=123)):
        assert get_client() is not first
        assert get_client().config.timeout_ms == 123


def test_a_forked_child_gets_its_own_client_and_worker() -> None:
    parent = get_client()
    parent.start()

    def child_side() -> bool:
        mine = get_client()
        ok = mine is not parent and mine.call("echo", 1) == 1 and mine.worker_pid != parent.worker_pid
        mine.close()
        return ok

    assert in_forked_child(child_side)
    assert get_client() is parent and parent.call("echo", 2) == 2


def test_metrics_go_to_jsonl_one_line_per_call(tmp_path: Path, get: Get) -> None:
    path = tmp_path / "metrics.jsonl"
    with override_settings(MOLT_ACCEL=molt_settings(METRICS_PATH=str(path))):
        assert get("echo", data={"a": "1"}).status_code == 200
        assert get("nope").status_code == 500
        close_clients()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["entry"], line["status"]) for line in lines] == [("echo", "Ok"), ("nope", "NotFound")]
    assert set(lines[0]) == {
        "entry", "status", "queue_us", "exec_us", "queue_depth", "encode_us", "decode_us", "round_trip_us"
    }


# -- under a real ASGI server -------------------------------------------------------------------


def _worker_children(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and "molt_worker" in stat:
                children.append(int(entry))
    return children


def test_a_client_disconnect_under_uvicorn_cancels_the_call_in_the_worker(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    sent_marker = tmp_path / "sent"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        "DJANGO_SETTINGS_MODULE": "djangoapp.settings",
        "MOLT_DEMO_METRICS_PATH": str(metrics),
        "MOLT_TEST_SENT_MARKER": str(sent_marker),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "djangoapp.asgi:application", "--fd", str(listener.fileno()),
         "--lifespan", "off", "--log-level", "warning"],
        env=env,
        pass_fds=[listener.fileno()],
    )
    listener.close()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG_BOUND_S) as conn:
            # A warm-up request starts the worker, so the spin call below goes out at once.
            conn.sendall(b"GET /async/echo?warm=up HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            conn.sendall(b"GET /async/spin?ms=30000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            wait_until(sent_marker.exists, "the view sends the spin call")
            workers = _worker_children(server.pid)
        # The connection is closed: Django cancels the view task, the client cancels the call.
        def spin_lines() -> list[dict[str, object]]:
            lines = [json.loads(text) for text in metrics.read_text().splitlines()]
            return [line for line in lines if line["entry"] == "spin"]

        wait_until(spin_lines, "the worker answers the spin call")
        (line,) = spin_lines()
        assert line["status"] == "Cancelled"
        assert line["exec_us"] < 30_000_000  # it stopped instead of spinning to the end
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=HANG_BOUND_S)
    assert len(workers) == 1
    wait_until(lambda: not os.path.exists(f"/proc/{workers[0]}"), "the worker exits with the server")
