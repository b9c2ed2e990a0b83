"""The one harness of these suites: a real molt_worker on pipes, spoken to in protocol v1 with
a codec of its own.

The frame codec here is deliberately independent of the molt_accel client: it checks the
worker against docs/protocol.md, not against another implementation that could share its
mistakes. The binary comes from $MOLT_WORKER_BIN (default target/debug/molt_worker_test).
"""

from __future__ import annotations

import os
import queue
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import NamedTuple

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


class Finished(NamedTuple):
    """How a worker ended: its exit code, the replies nobody had read, its whole stderr."""

    code: int
    replies: list[Reply]
    stderr: str


def encode(kind: int, request_id: int, entry: str = "", codec: int = RAW, payload: bytes = b"",
           deadline_ns: int = 0) -> bytes:
    """One frame with its u32 LE length prefix, as the worker reads them from stdin."""
    name = entry.encode()
    header = HEADER.pack(MAGIC, 1, kind, codec, 0, 0, len(name), 0, request_id, deadline_ns,
                         0, 0, 0, len(payload))
    frame = header + name + payload
    return struct.pack("<I", len(frame)) + frame


def decode(frame: bytes) -> Reply:
    """A reply frame (without its prefix), checking what every reply must hold."""
    (magic, version, kind, codec, status, flags, entry_len, reserved, request_id, deadline_ns,
     queue_us, exec_us, queue_depth, payload_len) = HEADER.unpack_from(frame)
    assert (magic, version, flags, entry_len, reserved, deadline_ns) == (MAGIC, 1, 0, 0, 0, 0)
    assert len(frame) == HEADER.size + payload_len
    return Reply(kind, codec, status, request_id, queue_us, exec_us, queue_depth,
                 frame[HEADER.size:])


class StdioWorker:
    """A worker started with ``--stdio --exports MANIFEST ARGS``. A thread reads its replies
    into a queue, another its stderr lines (``RUST_LOG=rust_log``), so that neither pipe can
    fill up and stall the worker while a test looks elsewhere."""

    def __init__(self, *args: str, manifest: Path = TEST_MANIFEST, rust_log: str = "error") -> None:
        self.proc = subprocess.Popen(
            [str(WORKER_BIN), "--stdio", "--exports", str(manifest), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": rust_log},
        )
        self.replies: queue.Queue[Reply | None] = queue.Queue()
        self._stderr_lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._next_id = 1
        self._threads = [
            threading.Thread(target=self._read_replies, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_replies(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while (prefix := out.read(4)) and len(prefix) == 4:
            (length,) = struct.unpack("<I", prefix)
            self.replies.put(decode(out.read(length)))
        self.replies.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self._stderr.append(line)
            self._stderr_lines.put(line)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def call(self, request_id: int, entry: str, codec: int = RAW, payload: bytes = b"",
             deadline_ns: int = 0) -> None:
        """Sends a call without waiting for its reply."""
        self.send(encode(CALL, request_id, entry, codec, payload, deadline_ns))

    def recv(self) -> Reply:
        reply = self.replies.get(timeout=HANG_BOUND_S)
        assert reply is not None, "worker closed stdout"
        return reply

    def request(self, entry: str, codec: int = RAW, payload: bytes = b"") -> Reply:
        """One call and its reply, with the next request id; for a test with one call in
        flight at a time."""
        request_id, self._next_id = self._next_id, self._next_id + 1
        self.call(request_id, entry, codec, payload)
        reply = self.recv()
        assert reply.request_id == request_id
        return reply

    def echo_calls(self, count: int) -> None:
        for _ in range(count):
            assert self.request("echo", RAW, bytes(64)).status == OK

    def replies_until_pong(self, ping_id: int) -> list[Reply]:
        """The worker handles frames in order: replies decided before the ping come first."""
        self.send(encode(PING, ping_id))
        got = []
        while (reply := self.recv()).kind != PONG:
            got.append(reply)
        assert reply.request_id == ping_id
        return got

    def stderr_line(self, needle: str) -> str:
        """The next stderr line containing ``needle``, waiting for it."""
        deadline = time.monotonic() + HANG_BOUND_S
        while True:
            line = self._stderr_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if needle in line:
                return line

    def finish(self) -> Finished:
        """Closes stdin (the worker's cue to answer what is in flight and exit) and waits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=HANG_BOUND_S)
        for thread in self._threads:
            thread.join(timeout=HANG_BOUND_S)
        rest = []
        while (reply := self.replies.get(timeout=HANG_BOUND_S)) is not None:
            rest.append(reply)
        return Finished(code, rest, "".join(self._stderr))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=HANG_BOUND_S)


#: What the ``workers`` fixture gives a test: starts a StdioWorker with these arguments.
StartWorker = Callable[..., StdioWorker]
