"""Speaks protocol v1 to the real molt_worker over stdio, with a codec of its own.

The frame codec here is deliberately independent of the molt_accel client: it checks the
worker against docs/protocol.md, not against another implementation that could share its
mistakes. The binary comes from $MOLT_WORKER_BIN (default target/debug/molt_worker_test).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import msgpack
import pytest

REPO = Path(__file__).resolve().parents[3]
WORKER_BIN = Path(os.environ.get("MOLT_WORKER_BIN", REPO / "target" / "debug" / "molt_worker_test"))
TEST_MANIFEST = REPO / "molt_exports.test.json"

# A bound only a hung worker exceeds; never a timing assertion.
HANG_BOUND_S = 20.0

HEADER = struct.Struct("<4sBBBBIHHQQIIII")
assert HEADER.size == 48
MAGIC = b"MOLT"

CALL, REPLY, CANCEL, PING, PONG = 1, 2, 3, 4, 5
RAW, MSGPACK, JSON = 0, 1, 2
OK, INVALID_INPUT, NOT_FOUND, BUSY, TIMEOUT, CANCELLED, INTERNAL_ERROR, PROTOCOL_ERROR = range(8)


@dataclass
class Reply:
    kind: int
    codec: int
    status: int
    request_id: int
    queue_us: int
    exec_us: int
    queue_depth: int
    payload: bytes


def encode(kind: int, request_id: int, entry: str = "", codec: int = RAW, payload: bytes = b"",
           deadline_ns: int = 0) -> bytes:
    name = entry.encode()
    header = HEADER.pack(MAGIC, 1, kind, codec, 0, 0, len(name), 0, request_id, deadline_ns,
                         0, 0, 0, len(payload))
    frame = header + name + payload
    return struct.pack("<I", len(frame)) + frame


def decode(frame: bytes) -> Reply:
    (magic, version, kind, codec, status, flags, entry_len, reserved, request_id, deadline_ns,
     queue_us, exec_us, queue_depth, payload_len) = HEADER.unpack_from(frame)
    assert (magic, version, flags, entry_len, reserved, deadline_ns) == (MAGIC, 1, 0, 0, 0, 0)
    assert len(frame) == HEADER.size + payload_len
    return Reply(kind, codec, status, request_id, queue_us, exec_us, queue_depth,
                 frame[HEADER.size:])


class Worker:
    def __init__(self, *args: str, manifest: Path = TEST_MANIFEST) -> None:
        self.proc = subprocess.Popen(
            [str(WORKER_BIN), "--stdio", "--exports", str(manifest), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": "error"},
        )
        self.replies: queue.Queue[Reply | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while (prefix := out.read(4)) and len(prefix) == 4:
            (length,) = struct.unpack("<I", prefix)
            self.replies.put(decode(out.read(length)))
        self.replies.put(None)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def call(self, request_id: int, entry: str, codec: int = RAW, payload: bytes = b"",
             deadline_ns: int = 0) -> None:
        self.send(encode(CALL, request_id, entry, codec, payload, deadline_ns))

    def recv(self) -> Reply:
        reply = self.replies.get(timeout=HANG_BOUND_S)
        assert reply is not None, "worker closed stdout"
        return reply

    def replies_until_pong(self, ping_id: int) -> list[Reply]:
        """The worker handles frames in order: replies decided before the ping come first."""
        self.send(encode(PING, ping_id))
        got = []
        while (reply := self.recv()).kind != PONG:
            got.append(reply)
        assert reply.request_id == ping_id
        return got

    def finish(self) -> tuple[int, list[Reply], str]:
        """Closes stdin; returns exit code, replies not yet read, and stderr."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=HANG_BOUND_S)
        self.reader.join(timeout=HANG_BOUND_S)
        rest = []
        while (reply := self.replies.get(timeout=HANG_BOUND_S)) is not None:
            rest.append(reply)
        assert self.proc.stderr is not None
        return code, rest, self.proc.stderr.read().decode()


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    if w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait()


def one_reply_each(replies: list[Reply], ids: list[int]) -> dict[int, int]:
    statuses: dict[int, int] = {}
    for reply in replies:
        assert reply.kind == REPLY
        assert reply.request_id not in statuses, f"two replies for {reply.request_id}"
        statuses[reply.request_id] = reply.status
    assert sorted(statuses) == sorted(ids)
    return statuses


def test_ping_gets_a_pong(worker: Worker) -> None:
    worker.send(encode(PING, 41))
    pong = worker.recv()
    assert (pong.kind, pong.request_id, pong.status) == (PONG, 41, OK)


@pytest.mark.parametrize("codec", [RAW, MSGPACK, JSON])
def test_echo_returns_the_payload_unchanged(worker: Worker, codec: int) -> None:
    payload = bytes(range(64))
    worker.call(1, "echo", codec, payload)
    reply = worker.recv()
    assert (reply.kind, reply.request_id, reply.status, reply.codec) == (REPLY, 1, OK, codec)
    assert reply.payload == payload


def test_health_reports_ok(worker: Worker) -> None:
    worker.call(2, "health", JSON)
    reply = worker.recv()
    assert reply.status == OK
    assert json.loads(reply.payload)["status"] == "ok"


def test_list_items_with_a_user_id_returns_items(worker: Worker) -> None:
    worker.call(3, "list_items", MSGPACK, msgpack.packb({"user_id": 7, "limit": 3}))
    reply = worker.recv()
    assert (reply.status, reply.codec) == (OK, MSGPACK), reply.payload
    assert len(msgpack.unpackb(reply.payload)["items"]) == 3


def test_list_items_without_user_id_is_invalid_input(worker: Worker) -> None:
    worker.call(4, "list_items", MSGPACK, msgpack.packb({"limit": 3}))
    reply = worker.recv()
    assert (reply.status, reply.codec) == (INVALID_INPUT, RAW)
    assert "user_id" in reply.payload.decode()


def test_an_unknown_entry_is_not_found(worker: Worker) -> None:
    worker.call(5, "nope")
    reply = worker.recv()
    assert (reply.status, reply.payload) == (NOT_FOUND, b"unknown entry: nope")


def test_a_flood_of_spin_calls_gets_busy() -> None:
    worker = Worker("--max-queue", "2", "--compute-threads", "1")
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


def test_sleep_past_its_deadline_times_out(worker: Worker) -> None:
    worker.call(6, "sleep", JSON, b'{"ms": 20000}', deadline_ns=time.monotonic_ns() + 50_000_000)
    reply = worker.recv()
    assert (reply.request_id, reply.status) == (6, TIMEOUT)


def test_cancel_of_a_spin_replies_cancelled(worker: Worker) -> None:
    worker.call(7, "spin", JSON, b'{"ms": 20000}')
    worker.send(encode(CANCEL, 7))
    reply = worker.recv()
    assert (reply.request_id, reply.status) == (7, CANCELLED)


def test_a_panic_in_an_entry_is_an_internal_error(worker: Worker) -> None:
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
def test_a_broken_stream_gets_one_protocol_error_and_a_nonzero_exit(worker: Worker, mangle) -> None:
    worker.send(mangle(encode(CALL, 10, "echo", RAW, b"abc")))
    code, replies, stderr = worker.finish()
    assert code != 0
    assert [(r.request_id, r.status) for r in replies] == [(0, PROTOCOL_ERROR)]
    assert len(stderr.splitlines()) == 1, stderr


def test_eof_with_calls_in_flight_answers_each_once(worker: Worker) -> None:
    worker.call(11, "spin", JSON, b'{"ms": 20000}')
    worker.call(12, "sleep", JSON, b'{"ms": 20000}')
    worker.call(13, "echo", RAW, b"e")
    code, rest, _ = worker.finish()
    assert code == 0
    assert one_reply_each(rest, [11, 12, 13]) == {11: CANCELLED, 12: CANCELLED, 13: OK}


def test_sigterm_answers_calls_in_flight_and_exits_zero(worker: Worker) -> None:
    worker.call(14, "sleep", JSON, b'{"ms": 20000}')
    assert worker.replies_until_pong(15) == []
    worker.proc.send_signal(signal.SIGTERM)
    reply = worker.recv()
    assert (reply.request_id, reply.status) == (14, CANCELLED)
    assert worker.proc.wait(timeout=HANG_BOUND_S) == 0
