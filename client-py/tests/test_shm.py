"""What only the shared-memory transport has: a full ring, fallback to stdio, attaching to a
worker someone else runs, kill -9 of that worker, and no descriptors or processes left behind.
Every protocol behaviour is tested over shm too, by the transport-parametrized suite."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from molt_accel import Busy, MoltClient, WorkerUnavailable
from molt_accel._transports import _shm, _shm_connection
from molt_client_support import HANG_BOUND_S, TEST_EXPORTS, in_forked_child, stop_process, wait_until, worker_cmd

pytestmark = pytest.mark.skipif(_shm._unsupported() is not None, reason=str(_shm._unsupported()))


@pytest.fixture
def clients() -> Iterator[list[MoltClient]]:
    made: list[MoltClient] = []
    yield made
    for client in made:
        client.close()


def shm_client(clients: list[MoltClient], **options: object) -> MoltClient:
    options.setdefault("worker_cmd", worker_cmd())
    options.setdefault("exports", str(TEST_EXPORTS))
    client = MoltClient(transport="shm", **options)  # type: ignore[arg-type]
    clients.append(client)
    return client


class ExternalWorker:
    """A worker run by the test, as a process manager would run it for many clients."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = worker_cmd("--socket", str(self.socket_path), "--exports", str(TEST_EXPORTS))
        self.proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        wait_until(self.socket_path.exists, "the worker listens")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def external_worker(tmp_path: Path) -> Iterator[ExternalWorker]:
    worker = ExternalWorker(tmp_path / "run" / "worker.sock")
    worker.start()
    yield worker
    if worker.proc is not None and worker.proc.poll() is None:
        worker.proc.terminate()
        worker.proc.wait(timeout=HANG_BOUND_S)


def test_a_full_request_ring_is_busy_at_once_and_the_rest_still_complete(clients) -> None:
    # The smallest ring that carries a call: a stopped worker's ring fills after a few calls.
    client = shm_client(clients, worker_cmd=worker_cmd("--ring-bytes", "256"))
    client.start()

    async def main() -> tuple[int, Busy]:
        await client.acall("echo", "connected")  # the loop's connection exists before the stop
        stop_process(client.worker_pid)  # type: ignore[arg-type]
        sent: list[asyncio.Task[object]] = []
        while True:
            task = asyncio.create_task(client.acall("echo", {"n": len(sent)}, timeout_ms=int(HANG_BOUND_S * 1000)))
            await asyncio.sleep(0)
            if task.done():
                error = task.exception()
                assert isinstance(error, Busy), error
                break
            sent.append(task)
            assert len(sent) < 100, "the ring never filled"
        os.kill(client.worker_pid, signal.SIGCONT)  # type: ignore[arg-type]
        assert await asyncio.gather(*sent) == [{"n": n} for n in range(len(sent))]
        return len(sent), error

    accepted, busy = asyncio.run(main())
    assert accepted >= 1
    assert "ring is full" in busy.safe_message and "/" not in busy.safe_message


def test_without_shared_memory_it_falls_back_to_stdio_with_one_warning(clients, monkeypatch, caplog) -> None:
    monkeypatch.setattr(_shm, "_unsupported", lambda: "shared memory is off in this test")
    monkeypatch.setattr(_shm, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="molt_accel"):
        for _ in range(2):
            client = shm_client(clients)
            assert client.call("echo", 1) == 1
            command = Path(f"/proc/{client.worker_pid}/cmdline").read_bytes().split(b"\0")
            assert b"--stdio" in command and b"--socket" not in command
    warnings = [r for r in caplog.records if "shared memory is off" in r.getMessage()]
    assert len(warnings) == 1


def test_strict_shm_fails_instead_of_falling_back(clients, monkeypatch) -> None:
    monkeypatch.setattr(_shm, "_unsupported", lambda: "shared memory is off in this test")
    client = shm_client(clients, strict_shm=True)
    with pytest.raises(WorkerUnavailable) as caught:
        client.call("echo", 1)
    assert "shared memory is off in this test" in caught.value.safe_message
    assert not caught.value.reached_worker


def test_a_socket_that_answers_without_a_segment_is_refused_and_strict_says_so(clients, tmp_path) -> None:
    path = tmp_path / "impostor.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def answer_with_garbage() -> None:
        peer, _ = server.accept()
        with peer:
            peer.sendall(b"\0" * 64)
            try:
                peer.recv(1)  # until the client hangs up
            except ConnectionResetError:
                pass  # it hung up with data unread: the same ending

    impostor = threading.Thread(target=answer_with_garbage, daemon=True)
    impostor.start()
    client = shm_client(clients, socket=str(path), strict_shm=True, start_timeout_ms=2000)
    with pytest.raises(WorkerUnavailable, match="segment was refused"):
        client.start()
    impostor.join(timeout=HANG_BOUND_S)
    server.close()


def test_clients_attach_to_a_shared_worker_and_reconnect_after_it_restarts(clients, external_worker) -> None:
    first = shm_client(clients, socket=str(external_worker.socket_path), max_restarts=1, start_timeout_ms=5000)
    second = shm_client(clients, socket=str(external_worker.socket_path))
    assert first.call("echo", "one") == "one" and second.call("echo", "two") == "two"
    assert first.worker_pid is None  # not this client's child

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(first.call, "sleep", {"ms": 5000}, timeout_ms=10_000)
        wait_until(lambda: first.in_flight == 1, "the call is in flight")
        killed_at = time.perf_counter()
        external_worker.kill()
        with pytest.raises(WorkerUnavailable) as caught:
            in_flight.result(timeout=HANG_BOUND_S)
        failed_s = time.perf_counter() - killed_at
    print(f"attached worker kill -9 to WorkerUnavailable: {failed_s * 1e3:.2f} ms")
    assert caught.value.reached_worker
    assert failed_s < 1.0  # a hang bound: the socket hang-up ends the wait, not the deadline

    external_worker.start()  # the process manager restarts it on the same path
    assert first.call("echo", "again") == "again"  # the one reconnect max_restarts allows


def test_an_attached_client_waits_for_the_socket_then_gives_up_without_leaking_the_path(clients, tmp_path) -> None:
    client = shm_client(clients, socket=str(tmp_path / "nobody.sock"), start_timeout_ms=200)
    with pytest.raises(WorkerUnavailable) as caught:
        client.call("echo", 1)
    assert "socket" in caught.value.safe_message and "/" not in caught.value.safe_message


def test_kill_9_fails_waiting_asyncio_calls_at_once(clients) -> None:
    client = shm_client(clients, max_restarts=0)
    client.start()

    async def main() -> list[BaseException | object]:
        calls = [asyncio.create_task(client.acall("sleep", {"ms": 5000}, timeout_ms=10_000)) for _ in range(8)]
        give_up = time.monotonic() + HANG_BOUND_S
        while client.in_flight < 8:
            assert time.monotonic() < give_up, "the calls were not sent"
            await asyncio.sleep(0.001)
        os.kill(client.worker_pid, signal.SIGKILL)  # type: ignore[arg-type]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HANG_BOUND_S)

    outcomes = asyncio.run(main())
    assert all(isinstance(o, WorkerUnavailable) and o.reached_worker for o in outcomes), outcomes


def test_replies_already_queued_are_taken_by_the_loop_without_the_reader_thread(clients, monkeypatch) -> None:
    """After every send the loop takes the replies already in its ring itself: with the reader
    thread held before it can touch the ring, a call still completes once a later send from
    the same loop finds its reply queued."""
    client = shm_client(clients)
    released = threading.Event()
    reader_receives = []
    receive = _shm_connection.recv

    def held_in_the_reader(*args: object) -> int:
        if threading.current_thread().name == "molt-shm-reader":
            reader_receives.append(released.is_set())
            released.wait(HANG_BOUND_S)
        return receive(*args)

    async def main() -> None:
        assert await client.acall("echo", "warm-up") == "warm-up"  # the loop's connection and reader
        monkeypatch.setattr(_shm_connection, "recv", held_in_the_reader)
        first = asyncio.create_task(client.acall("echo", "first"))
        later: list[asyncio.Task[object]] = []
        give_up = time.monotonic() + HANG_BOUND_S
        while not first.done():
            assert time.monotonic() < give_up, "the loop never took the first reply"
            later.append(asyncio.create_task(client.acall("echo", len(later))))
            await asyncio.sleep(0.001)
        assert first.result() == "first"
        # The reader got no further than the hold: the loop took the reply.
        assert reader_receives == [False] * len(reader_receives)
        released.set()
        assert await asyncio.gather(*later) == list(range(len(later)))

    asyncio.run(main())


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_descriptor_thread_or_process_is_left_after_calls_threads_and_restarts(clients) -> None:
    client = shm_client(clients, max_restarts=20)

    def burst() -> None:
        # Short-lived threads: each opens a connection, which must go when the thread ends.
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(client.call, "echo", n) for n in range(200)]:
                future.result(timeout=HANG_BOUND_S)

        async def tasks() -> None:
            await asyncio.gather(*(client.acall("echo", n) for n in range(50)))

        asyncio.run(tasks())

    burst()
    baseline_fds, baseline_threads = _open_fds(), threading.active_count()
    pids = []
    for _ in range(5):
        burst()
        pids.append(client.worker_pid)
        os.kill(pids[-1], signal.SIGKILL)  # type: ignore[arg-type]
        wait_until(lambda: not os.path.exists(f"/proc/{pids[-1]}"), "the killed worker is reaped")
        wait_until(lambda: not client._transport.alive, "the client sees the worker gone")  # type: ignore[union-attr]
        assert client.call("echo", "restarted") == "restarted"
        assert client.worker_pid != pids[-1]
    burst()
    wait_until(lambda: _open_fds() <= baseline_fds, f"descriptors are back to {baseline_fds} (now {_open_fds()})")
    wait_until(lambda: threading.active_count() <= baseline_threads, "helper threads have ended")
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} was not reaped"
    socket_dir = Path(f"/proc/{client.worker_pid}/cmdline").read_bytes().split(b"\0")
    client.close()
    socket_path = Path(os.fsdecode(socket_dir[socket_dir.index(b"--socket") + 1]))
    assert not socket_path.parent.exists()  # the private socket directory is removed


def _sockets() -> set[str]:
    """This process's open sockets, by inode (``socket:[N]``)."""
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.add(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:
            continue  # the descriptor listdir itself used
    return {link for link in links if link.startswith("socket:")}


def _segment_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum("memfd:molt-segment" in line for line in maps)


def test_a_forked_child_releases_the_inherited_segments_and_sockets_and_the_parent_keeps_them(clients) -> None:
    before = _sockets()
    client = shm_client(clients)
    # Two connections: this thread's and another thread's, which stays open while it lives.
    assert client.call("echo", 1) == 1
    other_thread_called = threading.Event()
    release_other_thread = threading.Event()

    def other_thread() -> None:
        client.call("echo", 2)
        other_thread_called.set()
        release_other_thread.wait(HANG_BOUND_S)

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        assert other_thread_called.wait(HANG_BOUND_S)
        inherited = _sockets() - before
        assert len(inherited) >= 2 and _segment_mappings() >= 2

        def child_side() -> bool:
            return not (_sockets() & inherited) and _segment_mappings() == 0

        assert in_forked_child(child_side)
        assert client.call("echo", 3) == 3
        assert _sockets() >= inherited
    finally:
        release_other_thread.set()
        thread.join(HANG_BOUND_S)
