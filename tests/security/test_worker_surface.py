"""What an attacker next to the worker can reach, and what error replies give away.

- The worker opens no TCP or UDP socket, whatever the transport.
- No segment is reachable by name: nothing in /dev/shm, no /dev/shm mapping in the worker
  (over shared memory, the segments are memfds: `/memfd:` mappings).
- The control socket (shared-memory transport): its directory is 0700, and a peer running as
  another user is refused even when it can reach the socket.
- Error replies carry no path, source location, panic text or backtrace, for any bad input
  this suite can think of; neither do the client's own errors.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from molt_accel import MoltClient, WorkerUnavailable
from molt_accel._frame import HEADER_LEN, Codec, Frame, Kind, Status, decode_frame, encode_call
from reliability_support import REPO, TEST_EXPORTS, SocketWorker, dev_shm_names, inet_sockets, wait_until

LENGTH = struct.Struct("<I")
HANG_BOUND_S = 20.0
# What an error message shown to a client must never contain.
LEAKS = [
    re.compile(r"/[\w.+-]+/"),  # a path with at least one directory
    re.compile(r"\.rs\b"),
    re.compile(r"panicked|backtrace|RUST_BACKTRACE|thread '", re.IGNORECASE),
    re.compile(re.escape(str(REPO))),
]


def leaks(message: str) -> list[str]:
    return [pattern.pattern for pattern in LEAKS if pattern.search(message)]


class RawWorker:
    """The worker over stdio, spoken to frame by frame, every reply collected."""

    def __init__(self, worker_bin: str) -> None:
        self.proc = subprocess.Popen(
            [worker_bin, "--stdio", "--exports", str(TEST_EXPORTS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.replies: list[Frame] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while len(prefix := self.proc.stdout.read(LENGTH.size)) == LENGTH.size:
            self.replies.append(decode_frame(self.proc.stdout.read(LENGTH.unpack(prefix)[0])))

    def send_frame(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(LENGTH.pack(len(frame)) + frame)
        self.proc.stdin.flush()

    def exchange(self, frame: bytes) -> Frame:
        """Sends one frame and waits for its reply (one at a time: no call is ever Busy)."""
        expected = len(self.replies) + 1
        self.send_frame(frame)
        assert wait_until(lambda: len(self.replies) >= expected, HANG_BOUND_S), "no reply"
        return self.replies[-1]

    def finish(self) -> int:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # The worker already ended the stream.
        self.reader.join(HANG_BOUND_S)
        assert not self.reader.is_alive()
        return self.proc.wait(HANG_BOUND_S)


def header(kind: int, codec: int = 0, status: int = 0, flags: int = 0, entry_len: int = 0, reserved: int = 0,
           request_id: int = 1, payload_len: int = 0) -> bytes:
    return struct.pack("<4sBBBBIHHQQIIII", b"MOLT", 1, kind, codec, status, flags, entry_len, reserved, request_id,
                       0, 0, 0, 0, payload_len)


def bad_payloads() -> Iterator[tuple[Codec, bytes]]:
    for codec in Codec:
        yield codec, b""
        yield codec, b"\xff\xfe\x00garbage"
    yield Codec.JSON, b"{"
    yield Codec.JSON, b"[" * 5000 + b"]" * 5000
    yield Codec.JSON, b'{"user_id": "x", "n": -1, "ms": 1e400, "q": null}'
    yield Codec.JSON, b'{"user_id": 99999999999999999999999999, "cursor": "v1:zz", "status": "weird"}'
    yield Codec.MSGPACK, msgpack.packb({"user_id": [1, 2], "n": "many", "ms": -5, "buckets": 1000})
    yield Codec.MSGPACK, msgpack.packb({"n": 2**64 - 1, "seed": -1, "limit": 0})
    yield Codec.MSGPACK, b"\xdd\xff\xff\xff\xff"  # an array claiming 4 billion items
    # Nesting deep enough to overflow a compute thread's stack, were it decoded recursively.
    yield Codec.MSGPACK, b"\x91" * 100_000 + b"\x01"
    yield Codec.MSGPACK, b"\x81\xa1k" * 100_000 + b"\x01"


def test_error_replies_carry_no_path_location_or_panic_text(worker_bin: str) -> None:
    worker = RawWorker(worker_bin)
    request_id = 0
    entries = [b"list_items", b"compute", b"sleep", b"spin", b"health", b"echo", b"panic", b"no_such_entry"]
    for entry in entries:
        for codec, payload in bad_payloads():
            request_id += 1
            worker.exchange(encode_call(request_id, entry, codec, 0, 0, payload))
    # Frames that are well framed but not understood: each answerable with ProtocolError.
    answerable = [
        header(9),  # unknown kind
        header(Kind.CALL, codec=9, entry_len=1) + b"e",  # unknown codec
        header(Kind.PING, flags=0x80),  # unknown flag
        header(Kind.PING, reserved=1),  # reserved bits
        header(Kind.PING, status=42),  # unknown status
        header(Kind.CALL, entry_len=2) + b"\xff\xfe",  # entry name not UTF-8
        header(Kind.CANCEL, entry_len=1) + b"e",  # an entry name on a cancel
        header(Kind.REPLY),  # a reply sent to the worker
    ]
    for frame in answerable:
        assert worker.exchange(frame).status is Status.PROTOCOL_ERROR
    # A deadline already passed.
    request_id += 1
    worker.exchange(encode_call(request_id, b"sleep", Codec.JSON, 0, 1, b'{"ms": 1}'))
    # Then a frame whose framing is broken: the stream ends with one ProtocolError (id 0).
    worker.send_frame(b"NOPE" + bytes(HEADER_LEN - 4))
    assert worker.finish() == 3
    errors = [reply for reply in worker.replies if reply.status is not Status.OK]
    statuses = {reply.status for reply in errors}
    assert {Status.INVALID_INPUT, Status.NOT_FOUND, Status.INTERNAL_ERROR, Status.PROTOCOL_ERROR} <= statuses
    for reply in errors:
        message = reply.payload.decode("utf-8")
        assert message, f"{reply.status.name} without a message"
        assert not leaks(message), f"{reply.status.name} reply leaks {leaks(message)}: {message!r}"


def test_an_oversized_frame_is_refused_without_leaking(worker_bin: str) -> None:
    worker = RawWorker(worker_bin)
    assert worker.proc.stdin is not None
    worker.proc.stdin.write(LENGTH.pack(0xFFFF_FFF0))
    worker.proc.stdin.flush()
    assert worker.finish() == 3
    assert [reply.status for reply in worker.replies] == [Status.PROTOCOL_ERROR]
    assert not leaks(worker.replies[0].payload.decode("utf-8"))


def test_client_errors_name_no_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "molt_worker"
    with MoltClient(worker_cmd=[str(missing)], exports=TEST_EXPORTS, start_timeout_ms=2000) as client:
        with pytest.raises(WorkerUnavailable) as raised:
            client.call("echo", {})
    assert not leaks(raised.value.safe_message), raised.value.safe_message


def test_the_worker_opens_no_inet_socket_and_no_named_segment(transport: str, worker_bin: str) -> None:
    shm_before = dev_shm_names()
    with MoltClient(
        worker_cmd=[worker_bin], exports=TEST_EXPORTS, transport=transport, strict_shm=transport == "shm"
    ) as client:
        assert client.call("echo", {"x": 1}) == {"x": 1}
        assert client.call("compute", {"n": 1000}, timeout_ms=5000)["n"] == 1000
        pid = client.worker_pid
        assert pid is not None
        assert inet_sockets(pid) == []
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "/dev/shm" not in maps
        if transport == "shm":
            assert "/memfd:" in maps, "the shared-memory transport maps no memfd segment"
        assert dev_shm_names() == shm_before


def test_the_control_socket_directory_is_private(socket_worker: SocketWorker) -> None:
    directory = socket_worker.socket.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700, oct(directory.stat().st_mode)
    assert directory.stat().st_uid == os.getuid()


# Runs as another user: connects and prints what came back (a segment descriptor or not).
_FOREIGN_PEER = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect-refused", exc.errno)
    sys.exit(0)
try:
    message, fds, _, _ = socket.recv_fds(s, 64, 4)
except OSError as exc:
    print("recv-failed", exc.errno)
    sys.exit(0)
print("got-segment" if fds else "no-segment", len(message))
"""


def run_as_nobody(*args: str) -> str:
    if os.getuid() != 0:
        pytest.skip("needs root to run a peer as another user (setpriv)")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", _FOREIGN_PEER, *args],
        capture_output=True,
        text=True,
        timeout=HANG_BOUND_S,
        check=False,
    )
    return done.stdout.strip()


def test_a_peer_of_another_user_cannot_reach_the_socket(socket_worker: SocketWorker) -> None:
    assert run_as_nobody(str(socket_worker.socket)).startswith("connect-refused")


def test_a_peer_of_another_user_gets_no_segment_even_through_an_open_directory(socket_worker: SocketWorker) -> None:
    # Open the way on purpose (as an operator's mistake would), so only the uid check is left.
    socket_worker.socket.parent.chmod(0o755)
    socket_worker.socket.chmod(0o777)
    outcome = run_as_nobody(str(socket_worker.socket))
    # It reached the socket (so only the worker's uid check stood in its way) and got nothing.
    assert outcome.startswith(("no-segment", "recv-failed")), outcome
