"""Speaks protocol v1 to the real molt_worker over stdio (the harness's own codec, see
stdio_worker.py), one behaviour of docs/protocol.md per test."""

from __future__ import annotations

import json
import signal
import struct
import time

import msgpack
import pytest

from stdio_worker import (
    BUSY,
    CALL,
    CANCEL,
    CANCELLED,
    INTERNAL_ERROR,
    INVALID_INPUT,
    JSON,
    MSGPACK,
    NOT_FOUND,
    OK,
    PING,
    PONG,
    PROTOCOL_ERROR,
    RAW,
    REPLY,
    TIMEOUT,
    HANG_BOUND_S,
    Reply,
    StartWorker,
    StdioWorker,
    encode,
)


def one_reply_each(replies: list[Reply], ids: list[int]) -> dict[int, int]:
    statuses: dict[int, int] = {}
    for reply in replies:
        assert reply.kind == REPLY
        assert reply.request_id not in statuses, f"two replies for {reply.request_id}"
        statuses[reply.request_id] = reply.status
    assert sorted(statuses) == sorted(ids)
    return statuses


def test_ping_gets_a_pong(worker: StdioWorker) -> None:
    worker.send(encode(PING, 41))
    pong = worker.recv()
    assert (pong.kind, pong.request_id, pong.status) == (PONG, 41, OK)


@pytest.mark.parametrize("codec", [RAW, MSGPACK, JSON])
def test_echo_returns_the_payload_unchanged(worker: StdioWorker, codec: int) -> None:
    payload = bytes(range(64))
    worker.call(1, "echo", codec, payload)
    reply = worker.recv()
    assert (reply.kind, reply.request_id, reply.status, reply.codec) == (REPLY, 1, OK, codec)
    assert reply.payload == payload


def test_health_reports_ok(worker: StdioWorker) -> None:
    worker.call(2, "health", JSON)
    reply = worker.recv()
    assert reply.status == OK
    assert json.loads(reply.payload)["status"] == "ok"


def test_list_items_with_a_user_id_returns_items(worker: StdioWorker) -> None:
    worker.call(3, "list_items", MSGPACK, msgpack.packb({"user_id": 7, "limit": 3}))
    reply = worker.recv()
    assert (reply.status, reply.codec) == (OK, MSGPACK), reply.payload
    assert len(msgpack.unpackb(reply.payload)["items"]) == 3


def test_list_items_without_user_id_is_invalid_input(worker: StdioWorker) -> None:
    worker.call(4, "list_items", MSGPACK, msgpack.packb({"limit": 3}))
    reply = worker.recv()
    assert (reply.status, reply.codec) == (INVALID_INPUT, RAW)
    assert "user_id" in reply.payload.decode()


def test_an_unknown_entry_is_not_found(worker: StdioWorker) -> None:
    worker.call(5, "nope")
    reply = worker.recv()
    assert (reply.status, reply.payload) == (NOT_FOUND, b"unknown entry: nope")


def test_a_flood_of_spin_calls_gets_busy(workers: StartWorker) -> None:
    worker = workers("--max-queue", "2", "--compute-threads", "1")
    ids = list(range(1, 9))
    for request_id in ids:
        worker.call(request_id, "spin", JSON, b'{"ms": 20000}')
    busy = worker.replies_until_pong(100)
    assert len(busy) >= len(ids) - 3
    assert {reply.status for reply in busy} == {BUSY}
    admitted = [i for i in ids if i not in {reply.request_id for reply in busy}]
    for request_id in admitted:
        worker.send(encode(CANCEL, request_id))
    cancelled = [worker.recv() for _ in admitted]
    assert {reply.status for reply in cancelled} == {CANCELLED}
    code, rest, _ = worker.finish()
    assert code == 0
    one_reply_each(busy + cancelled + rest, ids)


def test_sleep_past_its_deadline_times_out(worker: StdioWorker) -> None:
    worker.call(6, "sleep", JSON, b'{"ms": 20000}', deadline_ns=time.monotonic_ns() + 50_000_000)
    reply = worker.recv()
    assert (reply.request_id, reply.status) == (6, TIMEOUT)


def test_cancel_of_a_spin_replies_cancelled(worker: StdioWorker) -> None:
    worker.call(7, "spin", JSON, b'{"ms": 20000}')
    worker.send(encode(CANCEL, 7))
    reply = worker.recv()
    assert (reply.request_id, reply.status) == (7, CANCELLED)


def test_a_panic_in_an_entry_is_an_internal_error(worker: StdioWorker) -> None:
    worker.call(8, "panic")
    reply = worker.recv()
    assert (reply.status, reply.payload) == (INTERNAL_ERROR, b"internal error")
    worker.call(9, "echo", RAW, b"alive")
    assert worker.recv().payload == b"alive"


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda f: f[:4] + b"HTTP" + f[8:], id="bad-magic"),
    pytest.param(lambda f: f[:8] + b"\x09" + f[9:], id="bad-version"),
    pytest.param(lambda f: struct.pack("<I", 1 << 30), id="over-maximum"),
    pytest.param(lambda f: f[:-3], id="truncated-at-eof"),
    pytest.param(lambda f: struct.pack("<I", len(f) - 3) + f[4:] + b"\x00", id="length-mismatch"),
])
def test_a_broken_stream_gets_one_protocol_error_and_a_nonzero_exit(worker: StdioWorker, mangle) -> None:
    worker.send(mangle(encode(CALL, 10, "echo", RAW, b"abc")))
    code, replies, stderr = worker.finish()
    assert code != 0
    assert [(r.request_id, r.status) for r in replies] == [(0, PROTOCOL_ERROR)]
    assert len(stderr.splitlines()) == 1, stderr


def test_eof_with_calls_in_flight_answers_each_once(worker: StdioWorker) -> None:
    worker.call(11, "spin", JSON, b'{"ms": 20000}')
    worker.call(12, "sleep", JSON, b'{"ms": 20000}')
    worker.call(13, "echo", RAW, b"e")
    code, rest, _ = worker.finish()
    assert code == 0
    assert one_reply_each(rest, [11, 12, 13]) == {11: CANCELLED, 12: CANCELLED, 13: OK}


def test_sigterm_answers_calls_in_flight_and_exits_zero(worker: StdioWorker) -> None:
    worker.call(14, "sleep", JSON, b'{"ms": 20000}')
    assert worker.replies_until_pong(15) == []
    worker.proc.send_signal(signal.SIGTERM)
    reply = worker.recv()
    assert (reply.request_id, reply.status) == (14, CANCELLED)
    assert worker.proc.wait(timeout=HANG_BOUND_S) == 0
