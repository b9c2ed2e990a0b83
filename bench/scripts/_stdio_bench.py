"""What the stdio benchmark scripts share: protocol v1 spoken with `struct`, one echo worker.

The scripts speak the protocol themselves instead of going through molt_accel, so their
figures are the transport's floor (pipe, worker, pipe) with no client overhead on top.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
HEADER = struct.Struct("<4sBBBBIHHQQIIII")
CALL, REPLY, OK = 1, 2, 0
RAW, MSGPACK = 0, 1


def add_worker_args(parser: argparse.ArgumentParser) -> None:
    """--worker and --exports, defaulting to the release build and the repo's exports."""
    parser.add_argument("--worker", default=str(REPO / "target" / "release" / "molt_worker"))
    parser.add_argument("--exports", default=str(REPO / "molt_exports.json"))


def call_frame(request_id: int, entry: bytes, payload: bytes, codec: int) -> bytes:
    """A length-prefixed protocol v1 call frame."""
    frame = HEADER.pack(b"MOLT", 1, CALL, codec, 0, 0, len(entry), 0, request_id, 0, 0, 0, 0,
                        len(payload)) + entry + payload
    return struct.pack("<I", len(frame)) + frame


def read_exactly(stream: IO[bytes], n: int) -> bytes:
    """``n`` bytes from ``stream``; an unbuffered stream may return fewer per read."""
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise SystemExit("molt_worker closed stdout")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_reply(stream: IO[bytes]) -> bytes:
    """One reply frame, without its length prefix."""
    (length,) = struct.unpack("<I", read_exactly(stream, 4))
    return read_exactly(stream, length)


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class EchoWorker:
    """A `molt_worker --stdio` answering raw `echo` calls one at a time, unbuffered both ways."""

    def __init__(self, worker: str, exports: str, extra: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([worker, "--stdio", "--exports", exports, *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.out_fd = self.proc.stdin.fileno()
        self.replies = self.proc.stdout
        self.next_id = 1

    def round_trip(self, payload: bytes) -> int:
        """One echo call; returns its round trip in ns."""
        request_id, self.next_id = self.next_id, self.next_id + 1
        frame = call_frame(request_id, b"echo", payload, RAW)
        start = time.perf_counter_ns()
        os.write(self.out_fd, frame)
        reply = read_reply(self.replies)
        elapsed = time.perf_counter_ns() - start
        _, _, kind, _, status, _, _, _, reply_id, *_ = HEADER.unpack_from(reply)
        if (kind, status, reply_id) != (REPLY, OK, request_id) or reply[HEADER.size:] != payload:
            raise SystemExit(f"unexpected reply to call {request_id}: kind {kind} status {status}")
        return elapsed

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
