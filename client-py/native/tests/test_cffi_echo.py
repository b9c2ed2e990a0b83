"""The native module through cffi, as the shm transport will call it, against the Rust echo
server (ipc-ring/examples/echo_server.rs) in another process.

Runs wherever ``molt_accel._native`` is installed (a maturin build of client-py with cffi
bindings); the echo server is built with cargo on first use.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

native = pytest.importorskip("molt_accel._native", reason="molt_accel was built without its native module")
ffi, lib = native.ffi, native.lib

from molt_accel._frame import Codec, Kind, Status, decode_frame, encode_call  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
HANG_GUARD_S = 10.0


@pytest.fixture(scope="module")
def echo_server_binary() -> Path:
    # A debug build: `cargo test --workspace` (make test) has already built it, so this is a
    # no-op there; a release build would compile every dependency again on a fresh machine.
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "molt-ipc-ring", "--example", "echo_server"],
        cwd=REPO,
        check=True,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "examples" / "echo_server"


@pytest.fixture
def echo_server(echo_server_binary: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    socket_path = tmp_path / "echo.sock"
    server = subprocess.Popen([str(echo_server_binary), str(socket_path)], stdin=subprocess.PIPE)
    give_up = time.monotonic() + HANG_GUARD_S
    while not socket_path.exists():
        assert time.monotonic() < give_up, "echo server did not start"
        time.sleep(0.01)
    yield server, str(socket_path).encode()
    server.kill()
    server.wait()


def connect(socket_path: bytes):
    out = ffi.new("MoltShm **")
    assert lib.molt_shm_connect(socket_path, 2000, out) == lib.MOLT_SHM_OK
    return out[0]


def recv(handle, capacity: int, timeout_s: float, spin_ns: int = 20_000) -> tuple[int, bytes]:
    buf = ffi.new("uint8_t[]", capacity)
    length = ffi.new("uintptr_t *")
    deadline = time.monotonic_ns() + int(timeout_s * 1e9)
    status = lib.molt_shm_recv(handle, buf, capacity, length, deadline, spin_ns)
    if status == lib.MOLT_SHM_OK:
        return status, bytes(ffi.buffer(buf, length[0]))
    return status, length[0].to_bytes(8, "little")


def test_a_call_comes_back_as_a_reply_with_the_same_payload(echo_server) -> None:
    _, path = echo_server
    handle = connect(path)
    try:
        for request_id in range(1, 200):
            payload = os.urandom(request_id)
            call = encode_call(request_id, b"echo", Codec.RAW, 0, 0, payload)
            assert lib.molt_shm_send(handle, call, len(call)) == lib.MOLT_SHM_OK
            status, reply = recv(handle, 4096, HANG_GUARD_S)
            assert status == lib.MOLT_SHM_OK
            frame = decode_frame(reply)
            assert (frame.kind, frame.status, frame.request_id, frame.payload) == (
                Kind.REPLY,
                Status.OK,
                request_id,
                payload,
            )
    finally:
        lib.molt_shm_close(handle)


def test_a_reply_larger_than_the_buffer_reports_its_length_and_stays(echo_server) -> None:
    _, path = echo_server
    handle = connect(path)
    try:
        call = encode_call(1, b"echo", Codec.RAW, 0, 0, b"x" * 1000)
        assert lib.molt_shm_send(handle, call, len(call)) == lib.MOLT_SHM_OK
        status, needed = recv(handle, 16, HANG_GUARD_S)
        assert status == lib.MOLT_SHM_TOO_SMALL
        assert int.from_bytes(needed, "little") == 48 + 1000
        status, reply = recv(handle, 2048, HANG_GUARD_S)
        assert status == lib.MOLT_SHM_OK
        assert decode_frame(reply).payload == b"x" * 1000
    finally:
        lib.molt_shm_close(handle)


def test_no_reply_before_the_deadline_is_a_timeout(echo_server) -> None:
    _, path = echo_server
    handle = connect(path)
    try:
        assert recv(handle, 64, 0.02)[0] == lib.MOLT_SHM_TIMEOUT
    finally:
        lib.molt_shm_close(handle)


def test_a_killed_worker_ends_a_waiting_recv_with_closed(echo_server) -> None:
    server, path = echo_server
    handle = connect(path)
    try:
        server.kill()
        server.wait()
        assert recv(handle, 64, HANG_GUARD_S)[0] == lib.MOLT_SHM_CLOSED
        assert lib.molt_shm_check(handle) == lib.MOLT_SHM_CLOSED
    finally:
        lib.molt_shm_close(handle)


def test_connecting_to_a_missing_socket_fails_cleanly(tmp_path: Path) -> None:
    out = ffi.new("MoltShm **")
    missing = str(tmp_path / "nobody.sock").encode()
    assert lib.molt_shm_connect(missing, 100, out) == lib.MOLT_SHM_CONNECT_FAILED


def test_a_forked_child_that_forgets_its_copy_leaves_the_parent_connected(echo_server) -> None:
    _, path = echo_server
    handle = connect(path)
    try:
        child = os.fork()
        if child == 0:
            lib.molt_shm_forget(handle)
            os._exit(0)
        _, wait_status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(wait_status) == 0
        assert lib.molt_shm_check(handle) == lib.MOLT_SHM_OK
        call = encode_call(1, b"echo", Codec.RAW, 0, 0, b"after fork")
        assert lib.molt_shm_send(handle, call, len(call)) == lib.MOLT_SHM_OK
        status, reply = recv(handle, 4096, HANG_GUARD_S)
        assert status == lib.MOLT_SHM_OK
        assert decode_frame(reply).payload == b"after fork"
    finally:
        lib.molt_shm_close(handle)
