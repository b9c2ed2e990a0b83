"""MoltClient against the real worker: statuses, concurrency, deadlines, cancel, hooks."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from molt_client_support import (
    HANG_BOUND_S,
    TEST_EXPORTS,
    MakeClient,
    in_forked_child,
    stop_process,
    wait_until,
    worker_cmd,
)
from molt_accel import (
    Busy,
    CallMetrics,
    Cancelled,
    Hooks,
    InternalError,
    InvalidInput,
    MoltClient,
    NotFound,
    ProtocolError,
    Timeout,
    WorkerUnavailable,
)
from molt_accel._codecs import get_codec
from molt_accel._frame import Frame, Kind, Status, encode_frame


class Recorder:
    """Hooks that record what they see, thread-safely."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.received: list[tuple[str, str, CallMetrics]] = []
        self.errors: list[tuple[str, Exception]] = []
        self.lock = threading.Lock()
        self.hooks = Hooks(before_send=self.before_send, after_recv=self.after_recv, on_error=self.on_error)

    def before_send(self, entry: str, size: int) -> None:
        with self.lock:
            self.sent.append((entry, size))

    def after_recv(self, entry: str, status: str, metrics: CallMetrics) -> None:
        with self.lock:
            self.received.append((entry, status, metrics))

    def on_error(self, entry: str, error: Exception) -> None:
        with self.lock:
            self.errors.append((entry, error))

    def statuses(self, entry: str) -> list[str]:
        with self.lock:
            return [status for e, status, _ in self.received if e == entry]


def assert_safe(message: str) -> None:
    assert "/" not in message and "Traceback" not in message and "panicked at" not in message, message


async def worker_has_read(client: MoltClient, *, calls: int) -> None:
    """Returns once ``calls`` calls are in flight and the worker has read them: they were sent
    by tasks of this event loop, so over one connection (one per loop on every transport), and
    a ping on that connection is answered only after the frames before it were read. (A
    thread's ping says nothing about other threads' calls over shm: one connection each.)"""
    give_up = time.monotonic() + HANG_BOUND_S
    while client.in_flight < calls:
        assert time.monotonic() < give_up, "the calls were not sent"
        await asyncio.sleep(0.001)
    transport = client._transport
    assert transport is not None
    request_id = client._next_request_id()
    ping = encode_frame(Frame(kind=Kind.PING, request_id=request_id))
    reply = await transport.aexchange(request_id, "", ping, time.monotonic_ns() + int(HANG_BOUND_S * 1e9))
    assert reply.kind is Kind.PONG


# -- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "payload"),
    [("msgpack", {"x": 1, "s": "é", "b": b"\x00\xff"}), ("json", {"x": [1, 2.5, None]}), ("raw", b"\x00bytes\xff")],
)
def test_echo_returns_the_payload_in_every_codec(client: MoltClient, codec: str, payload: object) -> None:
    assert client.call("echo", payload, codec=codec) == payload


def test_replies_larger_than_the_read_buffer_come_back_whole_and_so_do_the_ones_after(client: MoltClient) -> None:
    # Both transports start with a 64 KiB reply buffer and grow it; stdio also keeps the start
    # of a frame that arrives in pieces. The sizes cross that, and stay inside a 1 MiB ring.
    for size in (65_535, 65_536, 300_001, 10, 200_000, 1):
        payload = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
        assert client.call("echo", payload, codec="raw") == payload


def test_a_payload_that_breaks_the_contract_is_invalid_input(client: MoltClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.call("spin", {"ms": "soon"})
    assert caught.value.status == "InvalidInput"
    assert caught.value.request_id is not None
    assert_safe(caught.value.safe_message)


def test_an_unencodable_payload_is_invalid_input_before_anything_is_sent(client: MoltClient) -> None:
    with pytest.raises(InvalidInput, match="msgpack"):
        client.call("echo", {"x": object()})
    assert client.worker_pid is None


def test_an_unknown_entry_is_not_found(client: MoltClient) -> None:
    with pytest.raises(NotFound) as caught:
        client.call("nope", {})
    assert_safe(caught.value.safe_message)


def test_the_worker_answers_timeout_at_the_deadline(make_client: MakeClient) -> None:
    recorder = Recorder()
    # One compute thread, kept busy: the sleep call waits in the worker's queue past its
    # deadline, so its reply comes from the worker's deadline timer alone. The client's grace
    # is long, so that on a loaded machine the client never gives up before that reply.
    client = make_client(
        hooks=recorder.hooks, worker_args=("--compute-threads", "1"), deadline_grace_ms=int(HANG_BOUND_S * 1000)
    )
    client.start()

    async def main() -> None:
        blocker = asyncio.create_task(client.acall("spin", {"ms": 20_000}, timeout_ms=30_000))
        await worker_has_read(client, calls=1)
        with pytest.raises(Timeout):
            await client.acall("sleep", {"ms": 10}, timeout_ms=100)
        await asyncio.to_thread(client.close)  # the worker cancels the blocker on EOF
        with pytest.raises(Cancelled):
            await asyncio.wait_for(blocker, HANG_BOUND_S)

    asyncio.run(main())
    # The worker's own reply, not the client giving up: it came with metrics.
    assert recorder.statuses("sleep") == ["Timeout"]


def test_an_entry_at_its_concurrency_limit_is_busy(make_client: MakeClient, one_spin_manifest) -> None:
    client = make_client(exports=str(one_spin_manifest))
    client.start()

    async def main() -> Busy:
        running = asyncio.create_task(client.acall("spin", {"ms": 20_000}, timeout_ms=30_000))
        await worker_has_read(client, calls=1)  # and admitted it
        with pytest.raises(Busy) as caught:
            await client.acall("spin", {"ms": 1})
        await asyncio.to_thread(client.close)  # the worker cancels the running spin on EOF
        with pytest.raises(Cancelled):
            await asyncio.wait_for(running, HANG_BOUND_S)
        return caught.value

    assert_safe(asyncio.run(main()).safe_message)


def test_a_panicking_entry_is_an_internal_error_with_a_safe_message(client: MoltClient) -> None:
    with pytest.raises(InternalError) as caught:
        client.call("panic", {})
    assert_safe(caught.value.safe_message)
    assert client.call("echo", {"after": "panic"}) == {"after": "panic"}


def test_a_call_the_worker_cancels_on_its_own_raises_cancelled(make_client: MakeClient) -> None:
    # SIGTERM makes the worker answer its calls Cancelled and exit. The call under test waits
    # in the queue behind a running one (one compute thread), so no entry races the shutdown.
    client = make_client(worker_args=("--compute-threads", "1"))
    client.start()

    async def main() -> Cancelled:
        running = asyncio.create_task(client.acall("spin", {"ms": 10_000}, timeout_ms=20_000))
        queued = asyncio.create_task(client.acall("sleep", {"ms": 10_000}, timeout_ms=20_000))
        await worker_has_read(client, calls=2)
        os.kill(client.worker_pid, signal.SIGTERM)  # type: ignore[arg-type]
        with pytest.raises(Cancelled) as caught:
            await asyncio.wait_for(queued, HANG_BOUND_S)
        await asyncio.gather(running, return_exceptions=True)
        return caught.value

    assert asyncio.run(main()).status == "Cancelled"


def test_a_frame_the_worker_does_not_understand_is_answered_protocol_error(client: MoltClient) -> None:
    client.start()
    transport = client._transport
    assert transport is not None
    bad = bytearray(encode_frame(Frame(kind=Kind.CALL, request_id=999_999, entry="echo")))
    bad[8] = 0b10  # a flag bit v1 does not define
    reply = transport.exchange(999_999, "echo", bytes(bad), time.monotonic_ns() + 5_000_000_000)
    assert reply.status is Status.PROTOCOL_ERROR
    with pytest.raises(ProtocolError):
        client._result("echo", reply, get_codec("msgpack"), 0, 0)
    assert client.call("echo", 1) == 1


# -- concurrency ------------------------------------------------------------------------------


def test_16_threads_sharing_a_client_each_get_their_own_replies(client: MoltClient) -> None:
    def worker(thread: int) -> None:
        for n in range(100):
            payload = {"thread": thread, "n": n, "pad": "x" * (n % 7)}
            assert client.call("echo", payload) == payload

    with ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(worker, t) for t in range(16)]:
            future.result(timeout=HANG_BOUND_S)
    assert client.in_flight == 0


def test_200_asyncio_tasks_each_get_their_own_reply_without_a_thread_per_call(make_client: MakeClient) -> None:
    threads_at_send: list[int] = []
    client = make_client(hooks=Hooks(before_send=lambda entry, size: threads_at_send.append(threading.active_count())))
    client.start()

    async def main() -> int:
        # The first call sets up what a transport keeps per event loop (a reader thread, for
        # shm); after that the thread count must not grow with the calls.
        assert await client.acall("echo", "first") == "first"
        threads_at_send.clear()
        baseline = threading.active_count()

        async def one(n: int) -> None:
            assert await client.acall("echo", {"task": n}) == {"task": n}

        await asyncio.gather(*(one(n) for n in range(200)))
        return baseline

    baseline = asyncio.run(main())
    assert len(threads_at_send) == 200
    assert max(threads_at_send) == baseline
    assert client.in_flight == 0


def test_acall_does_not_block_the_event_loop(client: MoltClient) -> None:
    client.start()

    async def main() -> None:
        slow = asyncio.create_task(client.acall("sleep", {"ms": 1000}, timeout_ms=5000))
        assert await client.acall("echo", "quick") == "quick"
        assert not slow.done()
        assert await slow == {"slept_ms": 1000}

    asyncio.run(main())


# -- cancellation and deadlines ---------------------------------------------------------------


def test_cancelling_acall_cancels_the_call_in_the_worker(make_client: MakeClient) -> None:
    recorder = Recorder()
    client = make_client(hooks=recorder.hooks)
    client.start()

    async def main() -> None:
        task = asyncio.create_task(client.acall("spin", {"ms": 20_000}, timeout_ms=30_000))
        await asyncio.to_thread(wait_until, lambda: client.in_flight == 1, "the spin call is in flight")
        await asyncio.to_thread(client.ping)  # the worker has read the call and started it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    wait_until(lambda: recorder.statuses("spin"), "the worker answers the cancelled spin")
    (_, status, metrics), = recorder.received
    assert status == "Cancelled"
    assert metrics.exec_us < 20_000_000  # it stopped instead of spinning to the end
    assert client.in_flight == 0  # nothing is left waiting for a reply


def test_a_wedged_worker_cannot_hold_a_call_past_its_deadline(make_client: MakeClient) -> None:
    recorder = Recorder()
    client = make_client(hooks=recorder.hooks)
    client.start()

    async def main() -> None:
        # Whatever a transport sets up per event loop is set up before the worker stops.
        await client.acall("echo", {"x": 0})
        recorder.received.clear()
        stop_process(client.worker_pid)  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(Timeout) as caught:
            client.call("echo", {"x": 1}, timeout_ms=200)
        assert time.monotonic() - started < HANG_BOUND_S
        assert "deadline" in caught.value.safe_message
        assert recorder.received == []  # the client gave up on its own: no reply yet
        with pytest.raises(Timeout):
            await client.acall("echo", {"x": 2}, timeout_ms=200)

    asyncio.run(main())
    os.kill(client.worker_pid, signal.SIGCONT)  # type: ignore[arg-type]
    # The worker now answers both abandoned calls (their deadlines passed) and the client
    # forgets them: nothing leaks.
    wait_until(lambda: client.in_flight == 0, "the late replies arrive")
    assert recorder.statuses("echo") == ["Timeout", "Timeout"]
    assert client.call("echo", "alive") == "alive"


def test_a_call_waits_for_a_worker_another_call_is_starting_no_longer_than_its_deadline(
    make_client: MakeClient, tmp_path
) -> None:
    # The worker starts only once the test writes to this FIFO: until then the first call is
    # starting it (bounded by start_timeout_ms, not by any call's deadline).
    go = tmp_path / "go"
    os.mkfifo(go)
    client = make_client(
        worker_cmd=["sh", "-c", 'read _ < "$0" && exec "$@"', str(go), *worker_cmd()],
        start_timeout_ms=int(HANG_BOUND_S * 1000),
    )
    starter = ThreadPoolExecutor(1)
    started = starter.submit(client.call, "echo", "first", timeout_ms=int(HANG_BOUND_S * 1000))
    wait_until(client._lock.locked, "the first call is starting the worker")
    with pytest.raises(Timeout) as caught:
        client.call("echo", "second", timeout_ms=50)
    assert "starting" in caught.value.safe_message
    assert not started.done()
    with open(go, "w") as fifo:
        fifo.write("go\n")
    assert started.result(timeout=HANG_BOUND_S) == "first"
    starter.shutdown()
    assert client.call("echo", "second") == "second"


# -- worker death and restart -----------------------------------------------------------------


def _kill_mid_call(client: MoltClient, entry: str, payload: object, *, idempotent: bool, calls: int = 1):
    """Starts ``calls`` calls on threads, kills -9 the worker once it has read them all, and
    returns (outcomes, seconds from the kill to the first failure or result, old pid)."""
    client.start()
    old_pid = client.worker_pid
    assert old_pid is not None
    done_at: list[float] = []
    lock = threading.Lock()

    def one() -> object:
        try:
            return client.call(entry, payload, timeout_ms=10_000, idempotent=idempotent)
        except WorkerUnavailable as exc:
            return exc
        finally:
            with lock:
                done_at.append(time.perf_counter())

    with ThreadPoolExecutor(calls) as pool:
        futures = [pool.submit(one) for _ in range(calls)]
        wait_until(lambda: client.in_flight == calls, "the calls are in flight")
        client.ping()
        killed_at = time.perf_counter()
        os.kill(old_pid, signal.SIGKILL)
        outcomes = [future.result(timeout=HANG_BOUND_S) for future in futures]
    return outcomes, min(done_at) - killed_at, max(done_at) - killed_at, old_pid


def test_kill_9_fails_every_call_in_flight_at_once_and_does_not_resend_them(make_client: MakeClient) -> None:
    recorder = Recorder()
    client = make_client(hooks=recorder.hooks, worker_args=("--compute-threads", "4"))
    outcomes, first_s, last_s, old_pid = _kill_mid_call(client, "sleep", {"ms": 5000}, idempotent=False, calls=4)
    print(f"kill -9 to WorkerUnavailable: first {first_s * 1e3:.2f} ms, last {last_s * 1e3:.2f} ms")
    assert last_s < 1.0  # a hang bound: they fail on EOF, not at their 10 s deadline
    for outcome in outcomes:
        assert isinstance(outcome, WorkerUnavailable)
        assert outcome.reached_worker
        assert_safe(outcome.safe_message)
    assert len(recorder.sent) == 4  # none was re-sent
    wait_until(lambda: not os.path.exists(f"/proc/{old_pid}"), "the dead worker is reaped")
    assert client.call("echo", "restarted") == "restarted"
    assert client.worker_pid not in (None, old_pid)


def test_an_idempotent_call_is_resent_to_the_restarted_worker(make_client: MakeClient) -> None:
    recorder = Recorder()
    client = make_client(hooks=recorder.hooks)
    outcomes, _, _, old_pid = _kill_mid_call(client, "sleep", {"ms": 300}, idempotent=True)
    assert outcomes == [{"slept_ms": 300}]
    assert [entry for entry, _ in recorder.sent] == ["sleep", "sleep"]
    assert client.worker_pid not in (None, old_pid)


def test_restarts_stop_after_max_restarts_and_say_why(make_client: MakeClient) -> None:
    client = make_client(max_restarts=1)

    def kill_worker() -> None:
        client.start()
        pid = client.worker_pid
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), "the dead worker is reaped")
        # And the client knows: a call sent in between would count as having reached it (over
        # shm, a frame pushed into a dead worker's ring cannot be told from one it read).
        wait_until(lambda: not client._transport.alive, "the client sees the worker gone")  # type: ignore[union-attr]

    kill_worker()
    assert client.call("echo", 1) == 1  # the one restart max_restarts allows
    kill_worker()
    with pytest.raises(WorkerUnavailable) as caught:
        client.call("echo", 1)
    assert "max_restarts" in caught.value.safe_message and "SIGKILL" in caught.value.safe_message
    assert_safe(caught.value.safe_message)


def test_a_worker_that_cannot_be_started_is_unavailable_without_leaking_its_path(make_client: MakeClient) -> None:
    client = make_client(worker_cmd=["/nonexistent/dir/molt_worker"])
    with pytest.raises(WorkerUnavailable) as caught:
        client.call("echo", 1)
    assert "ENOENT" in caught.value.safe_message
    assert_safe(caught.value.safe_message)


def test_worker_stderr_goes_to_the_worker_logger(make_client: MakeClient, tmp_path, caplog) -> None:
    manifest = tmp_path / "bad.json"
    manifest.write_text('{"entries": {"no_such_entry": {}}}')
    client = make_client(exports=str(manifest))
    with caplog.at_level(logging.INFO, logger="molt_accel.worker"):
        with pytest.raises(WorkerUnavailable, match="exited during start-up .*exit status"):
            client.start()
    assert any(r.name == "molt_accel.worker" and "no_such_entry" in r.getMessage() for r in caplog.records)


def test_close_stops_and_reaps_the_worker_and_later_calls_fail(client: MoltClient) -> None:
    client.start()
    pid = client.worker_pid
    assert pid is not None
    client.close()
    assert not os.path.exists(f"/proc/{pid}")
    with pytest.raises(WorkerUnavailable, match="closed"):
        client.call("echo", 1)


def test_a_client_dropped_without_close_stops_its_worker(transport: str) -> None:
    client = MoltClient(transport=transport, worker_cmd=worker_cmd(), exports=str(TEST_EXPORTS))
    assert client.call("echo", 1) == 1
    pid = client.worker_pid
    del client
    gc.collect()
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), "the dropped client's worker is stopped and reaped")


def test_context_managers_close_the_client(make_client: MakeClient) -> None:
    with make_client() as client:
        assert client.call("echo", 1) == 1
    with pytest.raises(WorkerUnavailable):
        client.call("echo", 1)

    async def main() -> None:
        async with make_client() as aclient:
            assert await aclient.acall("echo", 2) == 2
        with pytest.raises(WorkerUnavailable):
            await aclient.acall("echo", 2)

    asyncio.run(main())


def test_a_forked_child_never_uses_the_parents_worker(client: MoltClient) -> None:
    client.start()
    parent_worker = client.worker_pid

    def child_side() -> bool:
        ok = client.worker_pid is None and client.call("echo", "child") == "child"
        ok = ok and client.worker_pid not in (None, parent_worker)
        client.close()
        return ok

    assert in_forked_child(child_side)
    assert client.worker_pid == parent_worker
    assert client.call("echo", "parent") == "parent"


# -- hooks ------------------------------------------------------------------------------------


def test_hooks_see_every_call_with_worker_and_client_metrics(make_client: MakeClient) -> None:
    recorder = Recorder()
    client = make_client(hooks=recorder.hooks)
    client.call("echo", {"x": 1})
    with pytest.raises(NotFound):
        client.call("nope", {})
    assert recorder.sent == [("echo", 4), ("nope", 1)]
    assert [(entry, status) for entry, status, _ in recorder.received] == [("echo", "Ok"), ("nope", "NotFound")]
    metrics = recorder.received[0][2]
    assert metrics.round_trip_us > 0
    assert min(metrics.queue_us, metrics.exec_us, metrics.queue_depth, metrics.encode_us, metrics.decode_us) >= 0
    assert [(entry, type(error)) for entry, error in recorder.errors] == [("nope", NotFound)]


def test_a_raising_hook_never_breaks_a_call_and_is_logged_once(make_client: MakeClient, caplog) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("hook bug")

    client = make_client(hooks=Hooks(before_send=broken, after_recv=broken))
    with caplog.at_level(logging.ERROR, logger="molt_accel"):
        for n in range(3):
            assert client.call("echo", n) == n
    assert len([r for r in caplog.records if "hook" in r.getMessage()]) == 2
