"""The shared-memory transport: frames through the rings of a segment the worker hands out
over a unix socket (``docs/architecture.md``, "Python client transports").

Each *connection* is one segment (a request ring, a response ring) and one socket that stays
open as the liveness channel; connections are cheap, so they are never shared by two
readers:

- **Threads.** Every thread gets its own connection (``threading.local``). A call sends into
  the request ring and the calling thread itself waits in ``molt_shm_recv`` (spin, then
  futex; the GIL is released) for its reply: no lock is contended and no other thread is
  woken. A thread has one call in flight at a time, so a reply is always its own, checked by
  ``request_id``. When a call is abandoned (deadline), that connection is *retired* to one
  draining thread that waits for the late reply, and the caller's next call opens a new one;
  a thread that ends gives its connection back.
- **asyncio.** Every event loop gets one connection: tasks send from the loop (a send never
  blocks: a full ring is Busy), and one reader thread per connection waits in
  ``molt_shm_recv`` only while replies are due, resolving futures with
  ``loop.call_soon_threadsafe``. No thread per call; the loop never waits.

A spawned worker gets ``--stdio --socket DIR/worker.sock`` in a private (0700) temporary
directory. The client never writes to its stdin: the pipe is its lifetime, so a client that
is killed takes the worker with it, and ``close()`` ends it by closing the pipe. With
``socket=PATH`` the client attaches to a worker someone else runs; it cannot restart that
worker, so a "restart" is a new connection once the socket answers again.

The worker is gone when a spawned one exits or when any connection reports ``CLOSED`` (the
native side notices a hung-up socket within milliseconds, even mid-wait): every call waiting
on any connection then fails with WorkerUnavailable.

When shared memory cannot work here (no native module, not Linux, a worker that refuses
segments or sends an invalid one), the transport falls back to stdio with one warning,
unless ``strict_shm`` is set: then it raises WorkerUnavailable saying why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .._exceptions import Busy, MoltError, ProtocolError, Timeout, WorkerUnavailable
from .._frame import Frame, Kind, decode_frame, encode_frame
from .._config import ClientConfig
from ._base import LateReplyHandler, Transport
from ._process import (
    CLOSE_GRACE_S,
    await_exit,
    exit_reason,
    forget_worker,
    forward_stderr,
    kill_worker,
    log_unknown_reply,
    spawn_worker,
)
from ._stdio import StdioTransport

__all__ = ["ShmTransport"]

try:
    from .._native import ffi, lib
except ImportError:  # built without its native module (a pure-Python install)
    ffi = lib = None
else:
    # The hot path's two calls, looked up once.
    _send = lib.molt_shm_send
    _recv = lib.molt_shm_recv

logger = logging.getLogger("molt_accel")

#: How long a waiting caller spins on the response ring before sleeping on its futex. The
#: worker answers a short call well within it, so a hot call never enters the kernel; past
#: it, spinning would only take a core from Django on a small machine (bench/ipc/README.md).
SPIN_NS = 20_000
# How long a new worker's socket is waited for between checks that the worker still runs.
_SOCKET_POLL_S = 0.002
# Pause between attempts to reach a worker's socket that does not answer yet.
_ATTACH_RETRY_S = 0.01
# A reader or draining thread waits in slices of this long, so it notices close() promptly.
_READER_SLICE_NS = 100_000_000
# An idle reader checks this often whether its event loop was closed, to give the loop's
# connection back (one wake-up a second, nothing measurable).
_LOOP_CHECK_S = 1.0
# The first reply buffer of a connection; it grows to the largest reply seen.
_INITIAL_BUFFER = 1 << 16
# Retired connections waiting for late replies: past this many (a wedged worker with many
# callers timing out), the oldest is closed and its late replies are forgotten (the worker
# cancels their calls when the connection closes).
_MAX_RETIRED = 64

_warned: set[str] = set()


def _unsupported() -> str | None:
    """Why shared memory cannot work in this process at all, or None."""
    if not sys.platform.startswith("linux"):
        return "shared memory needs Linux (memfd)"
    if lib is None:
        return "molt_accel was installed without its native module"
    return None


class _Broken(Exception):
    """The response ring holds something no honest worker writes: the worker must go."""


class _Connection:
    """One segment and its socket.

    ``use`` is held by whoever calls into the handle as its reader (the calling thread, the
    reader thread, the draining thread); once the handle is closed it stays held forever, so
    nothing can call into a freed handle. ``state`` guards the tables, ``closed``, and every
    send made by a thread that does not hold ``use`` (asyncio sends, cancels).
    """

    __slots__ = (
        "handle", "use", "state", "wanted", "closed", "doomed", "retired", "stopping",
        "buf", "cap", "view", "out_len", "call_id", "sent_ns", "pending", "abandoned", "loop", "reader",
    )

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.use = threading.Lock()
        self.state = threading.Lock()
        # The reader thread of an asyncio connection sleeps on this while no reply is due.
        self.wanted = threading.Condition(self.state)
        self.closed = False
        self.doomed = False
        self.retired = False
        self.stopping = False
        self.grow(_INITIAL_BUFFER)
        self.out_len = ffi.new("uintptr_t *")
        # A thread's connection: the call in flight (0: none) and when it was sent.
        self.call_id = 0
        self.sent_ns = 0
        # An asyncio connection: request_id -> waiter.
        self.pending: dict[int, _AsyncWaiter] = {}
        # request_id -> (entry, sent_ns) of abandoned calls whose late reply is due.
        self.abandoned: dict[int, tuple[str, int]] = {}
        # An asyncio connection's loop, weakly: the connection must not keep it alive.
        self.loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self.reader: threading.Thread | None = None

    def grow(self, capacity: int) -> None:
        """A reply buffer of ``capacity`` bytes, reused by every receive, and a view of it to
        decode from without a copy."""
        self.cap = capacity
        self.buf = ffi.new("uint8_t[]", capacity)
        self.view = memoryview(ffi.buffer(self.buf, capacity))

    def due(self) -> int:
        return (1 if self.call_id else 0) + len(self.pending) + len(self.abandoned)


class _AsyncWaiter:
    """An asyncio call waiting for its reply; ``reply`` or ``error`` is set under the
    connection's ``state`` lock by whoever takes it out of ``pending``, before its future is
    resolved on the loop."""

    __slots__ = ("entry", "future", "sent_ns", "reply", "error")

    def __init__(self, entry: str, future: asyncio.Future[Frame]) -> None:
        self.entry = entry
        self.future = future
        self.sent_ns = 0
        self.reply: Frame | None = None
        self.error: Exception | None = None

    def outcome(self) -> Frame:
        if self.reply is None:
            assert self.error is not None
            raise self.error
        return self.reply


class _ThreadSlot:
    """What a thread's ``threading.local`` holds; its finalizer returns the connection."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: _Connection) -> None:
        self.conn: _Connection | None = conn


def _resolve(future: asyncio.Future[Frame], frame: Frame) -> None:
    if not future.done():
        future.set_result(frame)


def _fail(future: asyncio.Future[Frame], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


class ShmTransport(Transport):
    """A worker reached through shared-memory rings; see the module docstring."""

    name = "shm"

    def __init__(self, config: ClientConfig, *, next_request_id: Callable[[], int], late_reply: LateReplyHandler) -> None:
        super().__init__(config, next_request_id=next_request_id, late_reply=late_reply)
        # Set when shared memory could not be used: every method forwards to it.
        self._stdio: StdioTransport | None = None
        # Guards _conns, _loop_conns, _retired, _exit_reason, _stopping.
        self._state = threading.Lock()
        self._retired_wanted = threading.Condition(self._state)
        self._conns: set[_Connection] = set()
        # Weak: a connection must not keep its loop alive (its reader closes it once the loop
        # is closed).
        self._loop_conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Connection] = (
            weakref.WeakKeyDictionary()
        )
        # Connections being made for a loop; only ever touched from that loop's thread.
        self._loop_connecting: dict[asyncio.AbstractEventLoop, asyncio.Task[_Connection]] = {}
        self._retired: list[_Connection] = []
        self._drainer: threading.Thread | None = None
        # request_id -> the connection an abandoned call went out on, for cancel().
        self._routes: dict[int, _Connection] = {}
        self._local = threading.local()
        self._exit_reason: str | None = None
        self._stopping = False
        self._stop_by = 0.0
        self._forgotten = False
        self._socket_path = self.config.socket
        self._socket_dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: threading.Thread | None = None
        self._stderr_thread: threading.Thread | None = None
        self._max_frame_bytes = self.config.max_frame_bytes

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = _unsupported()
        if reason is not None:
            self._fall_back(reason)
            return
        deadline = time.monotonic() + self.config.start_timeout_ms / 1000
        if self._socket_path is None:
            self._spawn()
            conn = self._connect_spawned(deadline)
        else:
            conn = self._connect_attached(deadline)
        if conn is None:
            return  # fell back to stdio
        self._adopt_thread_connection(conn)
        request_id = self.next_request_id()
        ping = encode_frame(Frame(kind=Kind.PING, request_id=request_id))
        try:
            reply = self.exchange(request_id, "", ping, time.monotonic_ns() + self.config.start_timeout_ms * 1_000_000)
        except Timeout:
            self._gone("the worker did not answer its first ping in time")
            raise WorkerUnavailable("the worker did not answer its first ping in time") from None
        except WorkerUnavailable:
            raise WorkerUnavailable(f"the worker went away during start-up ({self.exit_reason})") from None
        if reply.kind is not Kind.PONG:
            self._gone("the worker answered its first ping with something else")
            raise WorkerUnavailable("the worker does not speak the molt protocol")

    def _spawn(self) -> None:
        self._socket_dir = tempfile.mkdtemp(prefix="molt-")  # mode 0700
        self._socket_path = os.path.join(self._socket_dir, "worker.sock")
        command = self.config.worker_command(["--stdio", "--socket", self._socket_path])
        try:
            # stdin is the worker's lifetime: it exits on EOF, also when this process is killed.
            proc = spawn_worker(command, stdout=subprocess.DEVNULL)
        except WorkerUnavailable as exc:
            self._exit_reason = exc.safe_message
            raise
        self._proc = proc
        self._reaper = threading.Thread(target=self._reap, args=(proc,), name=f"molt-shm-reaper-{proc.pid}", daemon=True)
        self._stderr_thread = threading.Thread(
            target=forward_stderr, args=(proc.stderr,), name=f"molt-shm-stderr-{proc.pid}", daemon=True
        )
        self._reaper.start()
        self._stderr_thread.start()

    def _connect_spawned(self, deadline: float) -> _Connection | None:
        proc = self._proc
        assert proc is not None and self._socket_path is not None
        while not os.path.exists(self._socket_path):
            if proc.poll() is not None:
                self._started_and_died()
            if time.monotonic() > deadline:
                self._gone("the worker did not open its socket in time")
                raise WorkerUnavailable("the worker did not answer its first ping in time")
            time.sleep(_SOCKET_POLL_S)
        # The socket file appears at bind, a moment before the worker listens: a refused
        # connection is tried again until the start timeout.
        while True:
            status, conn = self._connect(deadline)
            if conn is not None:
                return conn
            if proc.poll() is not None:
                self._started_and_died()
            if status == lib.MOLT_SHM_HANDSHAKE_FAILED:
                self._fall_back("the worker's shared-memory segment was refused")
                return None
            if time.monotonic() > deadline:
                self._fall_back("the worker refused shared-memory connections")
                return None
            time.sleep(_ATTACH_RETRY_S)

    def _started_and_died(self) -> None:
        assert self._reaper is not None
        self._reaper.join(timeout=CLOSE_GRACE_S)
        raise WorkerUnavailable(f"the worker exited during start-up ({self.exit_reason})")

    def _connect_attached(self, deadline: float) -> _Connection | None:
        # Absent or not answering yet (being restarted by whoever runs it): try again until
        # the start timeout. Any other failure is not about the worker's absence.
        while True:
            status, conn = self._connect(deadline)
            if conn is not None:
                return conn
            if status == lib.MOLT_SHM_HANDSHAKE_FAILED:
                self._fall_back("the worker's shared-memory segment was refused")
                return None
            if time.monotonic() > deadline:
                self._exit_reason = "no worker answers on the configured socket"
                raise WorkerUnavailable(self._exit_reason)
            time.sleep(_ATTACH_RETRY_S)

    def _connect(self, deadline: float) -> tuple[int, _Connection | None]:
        """One connection attempt; the new connection is registered (and closed with the
        transport)."""
        assert self._socket_path is not None
        out = ffi.new("MoltShm **")
        timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
        status = lib.molt_shm_connect(os.fsencode(self._socket_path), timeout_ms, out)
        if status != lib.MOLT_SHM_OK:
            return status, None
        conn = _Connection(out[0])
        with self._state:
            doomed = self._stopping or self._exit_reason is not None
            if not doomed:
                self._conns.add(conn)
        if doomed:
            # Outside _state: _close_connection takes it (a plain Lock) to unregister.
            conn.use.acquire()
            self._close_connection(conn)
            return lib.MOLT_SHM_CLOSED, None
        return status, conn

    def _fall_back(self, reason: str) -> None:
        if self.config.strict_shm:
            self._exit_reason = f"shared memory is unavailable: {reason}"
            raise WorkerUnavailable(f"{self._exit_reason} (strict_shm is set)")
        if reason not in _warned:
            _warned.add(reason)
            logger.warning("molt: %s; using the stdio transport instead", reason)
        self._shutdown_shm()
        stdio = StdioTransport(self.config, next_request_id=self.next_request_id, late_reply=self.late_reply)
        self._stdio = stdio
        stdio.start()

    def close(self) -> None:
        if self._stdio is not None:
            self._stdio.close()
            return
        self._shutdown_shm()

    def _shutdown_shm(self) -> None:
        with self._state:
            self._stopping = True
            self._stop_by = time.monotonic() + CLOSE_GRACE_S
            self._retired_wanted.notify_all()
            loop_conns = list(self._loop_conns.values())
        for conn in loop_conns:
            with conn.state:
                conn.stopping = True
                conn.wanted.notify_all()
        proc = self._proc
        if proc is not None:
            # EOF on stdin: the worker answers or cancels what is in flight and exits, which
            # ends every wait on its rings.
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass  # Already broken: the worker is gone, which is what close wants.
            assert self._reaper is not None
            await_exit(self._reaper, self._kill)
        threads = [conn.reader for conn in loop_conns] + [self._drainer, self._stderr_thread]
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=CLOSE_GRACE_S)
        with self._state:
            conns = list(self._conns)
        for conn in conns:
            conn.doomed = True
            self._close_if_idle(conn)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def forget_after_fork(self) -> None:
        if self._stdio is not None:
            self._stdio.forget_after_fork()
            return
        # Every inherited handle is forgotten, never closed: closing would mark the parent's
        # segment closed and end its connection. Forgetting releases only this process's
        # socket descriptor and mapping, and takes none of the handle's locks (a parent thread
        # may have held one at the fork). A connection already marked closed may have been
        # freed by a parent thread at the fork: it is left alone.
        self._forgotten = True
        self._exit_reason = "the worker belongs to the parent process"
        for conn in self._conns:
            if not conn.closed:
                conn.closed = True
                lib.molt_shm_forget(conn.handle)
        self._conns = set()
        self._loop_connecting = {}
        self._loop_conns = weakref.WeakKeyDictionary()
        self._retired = []
        self._routes = {}
        self._local = threading.local()
        self._socket_dir = None  # the parent removes it
        proc = self._proc
        if proc is not None:
            forget_worker(proc)
            self._proc = None

    def _kill(self, reason: str) -> None:
        self._gone(reason)
        kill_worker(self._proc, reason)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        returncode = proc.wait()
        self._gone("the worker exited")
        level = logging.INFO if returncode == 0 else logging.WARNING
        logger.log(level, "molt worker %d is gone: %s", proc.pid, self.exit_reason)

    def _gone(self, reason: str) -> None:
        """The worker can no longer answer: calls made from now on are refused. Calls waiting
        on a ring fail on their own (their wait ends with CLOSED)."""
        with self._state:
            if self._exit_reason is None:
                self._exit_reason = reason

    # -- properties ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        if self._stdio is not None:
            return self._stdio.alive
        proc = self._proc
        return self._exit_reason is None and (proc is None or proc.returncode is None)

    @property
    def exit_reason(self) -> str | None:
        if self._stdio is not None:
            return self._stdio.exit_reason
        return exit_reason(self._exit_reason, self._proc)

    @property
    def in_flight(self) -> int:
        if self._stdio is not None:
            return self._stdio.in_flight
        with self._state:
            conns = list(self._conns)
        return sum(conn.due() for conn in conns)

    @property
    def worker_pid(self) -> int | None:
        if self._stdio is not None:
            return self._stdio.worker_pid
        return self._proc.pid if self._proc is not None else None

    # -- threads -------------------------------------------------------------------------------

    def exchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        if self._stdio is not None:
            return self._stdio.exchange(request_id, entry, frame, wait_until_ns)
        slot = getattr(self._local, "slot", None)
        conn = slot.conn if slot is not None else None
        if conn is None or conn.doomed or self._exit_reason is not None:
            conn = self._new_thread_connection(request_id, wait_until_ns)
        if not conn.use.acquire(blocking=False):
            # Only close() takes a thread's connection from it.
            raise WorkerUnavailable("the client is closing", request_id=request_id)
        abandoned = False
        try:
            if conn.closed:
                raise WorkerUnavailable("the client is closing", request_id=request_id)
            status = _send(conn.handle, frame, len(frame))
            if status != 0:
                raise self._send_failed(status, request_id, len(frame))
            conn.sent_ns = time.perf_counter_ns()
            conn.call_id = request_id
            # The common case inline (a reply that fits the buffer); _receive does the rest.
            if _recv(conn.handle, conn.buf, conn.cap, conn.out_len, wait_until_ns, SPIN_NS) == 0:
                try:
                    reply = decode_frame(conn.view[: conn.out_len[0]], self._max_frame_bytes)
                except ProtocolError as exc:
                    raise self._undecodable(exc, request_id) from None
                if reply.request_id == request_id:
                    return reply
                log_unknown_reply(reply)
            while True:
                received = self._receive(conn, wait_until_ns, SPIN_NS, request_id)
                if received is None:
                    abandoned = True
                    raise Timeout("the worker did not answer before the deadline", request_id=request_id)
                if received.request_id == request_id:
                    return received
                log_unknown_reply(received)
        finally:
            conn.call_id = 0
            conn.use.release()
            if abandoned:
                self._retire(conn, request_id, entry)
            elif conn.doomed:
                self._close_if_idle(conn)

    def _new_thread_connection(self, request_id: int, wait_until_ns: int) -> _Connection:
        conn = self._connect_for_call(request_id, wait_until_ns)
        self._adopt_thread_connection(conn)
        return conn

    def _connect_for_call(self, request_id: int, wait_until_ns: int) -> _Connection:
        """A new connection for a call that must be sent by ``wait_until_ns``: Timeout if the
        worker does not answer by then (a wedged worker is not a dead one), WorkerUnavailable
        (not reached) if it refuses."""
        if self._exit_reason is not None or self._stopping:
            raise WorkerUnavailable(f"the worker is not running ({self.exit_reason})", request_id=request_id)
        remaining_s = (wait_until_ns - time.monotonic_ns()) / 1e9
        status, conn = self._connect(time.monotonic() + min(remaining_s, self.config.start_timeout_ms / 1000))
        if conn is not None:
            return conn
        if status == lib.MOLT_SHM_CONNECT_FAILED and time.monotonic_ns() >= wait_until_ns:
            raise Timeout("the worker did not accept the call before the deadline", request_id=request_id)
        if status == lib.MOLT_SHM_CONNECT_FAILED:
            self._gone("the worker stopped accepting connections")
        elif status != lib.MOLT_SHM_CLOSED:
            self._gone(f"the worker refused a new connection ({_status_name(status)})")
        raise WorkerUnavailable(f"the worker is not running ({self.exit_reason})", request_id=request_id)

    def _adopt_thread_connection(self, conn: _Connection) -> None:
        slot = _ThreadSlot(conn)
        self._local.slot = slot
        # When the thread ends its local goes, and the connection with it.
        weakref.finalize(slot, _thread_ended, weakref.ref(self), conn)

    def _receive(self, conn: _Connection, wait_until_ns: int, spin_ns: int, request_id: int) -> Frame | None:
        """The next reply on ``conn`` (whose ``use`` the caller holds), None at
        ``wait_until_ns``. Raises WorkerUnavailable when the worker is gone, ProtocolError
        for an answerable reply the client does not understand."""
        while True:
            status = _recv(conn.handle, conn.buf, conn.cap, conn.out_len, wait_until_ns, spin_ns)
            if status == 0:
                try:
                    return decode_frame(conn.view[: conn.out_len[0]], self._max_frame_bytes)
                except ProtocolError as exc:
                    raise self._undecodable(exc, request_id) from None
            if status == lib.MOLT_SHM_TIMEOUT:
                return None
            if status == lib.MOLT_SHM_TOO_SMALL:
                needed = conn.out_len[0]
                if needed > self._max_frame_bytes:
                    self._break(f"the worker sent a frame of {needed} bytes")
                    raise WorkerUnavailable(
                        "the worker sent a frame larger than max_frame_bytes", request_id=request_id, reached_worker=True
                    )
                conn.grow(needed)
                continue
            if status == lib.MOLT_SHM_CLOSED:
                self._gone("the worker exited")
            else:
                self._break(f"the shared-memory ring is unusable ({_status_name(status)})")
            raise WorkerUnavailable("the worker exited before answering", request_id=request_id, reached_worker=True)

    def _undecodable(self, exc: ProtocolError, request_id: int) -> MoltError:
        """The error for a reply that did not decode: a ProtocolError for the call it answers,
        or WorkerUnavailable if it answers nothing (the worker is then broken)."""
        if exc.request_id is None:
            self._break(f"the worker sent a malformed frame: {exc.safe_message}")
            return WorkerUnavailable("the worker sent a malformed frame", request_id=request_id, reached_worker=True)
        return ProtocolError(
            f"the worker sent a reply the client does not understand: {exc.safe_message}", request_id=exc.request_id
        )

    def _break(self, detail: str) -> None:
        """The worker wrote what no honest worker writes: a spawned one is killed (and
        restarted by the client), an attached one is left (every call fails until a new
        connection is made)."""
        if self._proc is not None:
            self._kill(detail)
        else:
            self._gone(detail)
            logger.warning("molt worker: %s", detail)

    def _send_failed(self, status: int, request_id: int, length: int) -> Exception:
        if status == lib.MOLT_SHM_FULL:
            return Busy(
                "the worker's request ring is full (it is not keeping up); the call was not sent",
                request_id=request_id,
            )
        if status == lib.MOLT_SHM_TOO_LARGE:
            return ProtocolError(
                f"a frame of {length} bytes is larger than the worker's shared-memory ring accepts (--ring-bytes)",
                request_id=request_id,
            )
        if status == lib.MOLT_SHM_CLOSED:
            self._gone("the worker exited")
        else:
            self._break(f"the shared-memory ring is unusable ({_status_name(status)})")
        return WorkerUnavailable(f"the worker is not running ({self.exit_reason})", request_id=request_id)

    def _retire(self, conn: _Connection, request_id: int, entry: str) -> None:
        """Hands a connection whose call was abandoned to the draining thread, which waits for
        the late reply; the caller's thread opens a new connection for its next call."""
        slot = getattr(self._local, "slot", None)
        if slot is not None and slot.conn is conn:
            slot.conn = None
        with conn.state:
            conn.abandoned[request_id] = (entry, conn.sent_ns)
        self._routes[request_id] = conn
        evicted = None
        with self._state:
            conn.retired = True
            self._retired.append(conn)
            if len(self._retired) > _MAX_RETIRED:
                evicted = self._retired.pop(0)
            if self._drainer is None and not self._stopping:
                self._drainer = threading.Thread(target=self._drain, name="molt-shm-drainer", daemon=True)
                self._drainer.start()
            self._retired_wanted.notify()
        if evicted is not None:
            evicted.doomed = True
            self._close_if_idle(evicted)

    def _drain(self) -> None:
        """The draining thread: waits for the late replies of retired connections, then
        closes them."""
        while True:
            with self._state:
                while not self._retired and not self._stopping:
                    self._retired_wanted.wait()
                if not self._retired:
                    return
                conns = list(self._retired)
            slice_ns = max(_READER_SLICE_NS // len(conns), 1_000_000)
            for conn in conns:
                finished = True
                if conn.use.acquire(blocking=False):
                    try:
                        finished = self._drain_one(conn, slice_ns)
                    finally:
                        conn.use.release()
                if finished or (self._stopping and time.monotonic() > self._stop_by):
                    with self._state:
                        if conn in self._retired:
                            self._retired.remove(conn)
                    conn.doomed = True
                    self._close_if_idle(conn)

    def _drain_one(self, conn: _Connection, slice_ns: int) -> bool:
        """Waits up to ``slice_ns`` for a late reply on ``conn``; True once nothing more can
        come."""
        if conn.closed:
            return True
        try:
            reply = self._receive(conn, time.monotonic_ns() + slice_ns, 0, 0)
        except WorkerUnavailable:
            return True
        except ProtocolError as exc:
            with conn.state:
                conn.abandoned.pop(exc.request_id or 0, None)
        else:
            if reply is not None:
                self._deliver_late(conn, reply)
        return not conn.abandoned

    def _deliver_late(self, conn: _Connection, reply: Frame) -> None:
        with conn.state:
            late = conn.abandoned.pop(reply.request_id, None)
        if late is None:
            log_unknown_reply(reply)
            return
        self._routes.pop(reply.request_id, None)
        self.late_reply(late[0], reply, late[1])

    def _close_if_idle(self, conn: _Connection) -> None:
        """Closes ``conn`` now if nobody uses it; otherwise its user does, when done (it sees
        ``doomed``)."""
        if self._forgotten:
            return
        if conn.use.acquire(blocking=False):
            self._close_connection(conn)

    def _close_connection(self, conn: _Connection) -> None:
        """Frees the handle; the caller holds ``conn.use``, which stays held."""
        with conn.state:
            if conn.closed:
                return
            conn.closed = True
            lib.molt_shm_close(conn.handle)
            for request_id in conn.abandoned:
                self._routes.pop(request_id, None)
            conn.abandoned.clear()
        with self._state:
            self._conns.discard(conn)
            loop = conn.loop() if conn.loop is not None else None
            if loop is not None and self._loop_conns.get(loop) is conn:
                del self._loop_conns[loop]

    # -- asyncio -------------------------------------------------------------------------------

    async def aexchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        if self._stdio is not None:
            return await self._stdio.aexchange(request_id, entry, frame, wait_until_ns)
        loop = asyncio.get_running_loop()
        conn = self._loop_conns.get(loop)
        if conn is None or conn.closed:
            conn = await self._connect_loop(loop, request_id, wait_until_ns)
        waiter = _AsyncWaiter(entry, loop.create_future())
        with conn.state:
            if conn.closed or conn.stopping or self._exit_reason is not None:
                raise WorkerUnavailable(f"the worker is not running ({self.exit_reason})", request_id=request_id)
            status = _send(conn.handle, frame, len(frame))
            if status != 0:
                error = self._send_failed(status, request_id, len(frame))
            else:
                error = None
                waiter.sent_ns = time.perf_counter_ns()
                conn.pending[request_id] = waiter
                conn.wanted.notify()
        if error is not None:
            raise error
        try:
            async with asyncio.timeout((wait_until_ns - time.monotonic_ns()) / 1e9):
                return await waiter.future
        except TimeoutError:
            if self._abandon(conn, request_id, waiter):
                raise Timeout("the worker did not answer before the deadline", request_id=request_id) from None
            return waiter.outcome()
        except asyncio.CancelledError:
            if not self._abandon(conn, request_id, waiter) and waiter.reply is not None:
                # The reply won the race with the cancellation: account for it as a late one.
                self.late_reply(entry, waiter.reply, waiter.sent_ns)
            raise

    async def _connect_loop(self, loop: asyncio.AbstractEventLoop, request_id: int, wait_until_ns: int) -> _Connection:
        """The loop's connection, made once however many tasks ask at the same time.
        Connecting waits for the worker's answer, so it runs off the loop."""
        connecting = self._loop_connecting.get(loop)
        if connecting is None:
            connecting = loop.create_task(asyncio.to_thread(self._loop_connection, loop, request_id, wait_until_ns))
            self._loop_connecting[loop] = connecting
            connecting.add_done_callback(lambda _: self._loop_connecting.pop(loop, None))
        # Shielded: one task being cancelled must not cancel the connection the others await.
        return await asyncio.shield(connecting)

    def _loop_connection(self, loop: asyncio.AbstractEventLoop, request_id: int, wait_until_ns: int) -> _Connection:
        with self._state:
            conn = self._loop_conns.get(loop)
        if conn is not None and not conn.closed:
            return conn
        conn = self._connect_for_call(request_id, wait_until_ns)
        conn.loop = weakref.ref(loop)
        with self._state:
            existing = self._loop_conns.get(loop)
            if existing is None or existing.closed:
                self._loop_conns[loop] = conn
        if existing is not None and not existing.closed:
            # Two tasks of this loop connected at once: keep the first connection.
            conn.use.acquire()
            self._close_connection(conn)
            return existing
        conn.reader = threading.Thread(target=self._serve, args=(conn,), name="molt-shm-reader", daemon=True)
        conn.use.acquire()  # the reader's for its whole life
        conn.reader.start()
        return conn

    def _abandon(self, conn: _Connection, request_id: int, waiter: _AsyncWaiter) -> bool:
        """Moves a call whose awaiting stopped to the abandoned table, so its reply goes to
        ``late_reply``. False if the reply (or the worker's death) got there first."""
        with conn.state:
            if conn.pending.pop(request_id, None) is None:
                return False
            conn.abandoned[request_id] = (waiter.entry, waiter.sent_ns)
        self._routes[request_id] = conn
        return True

    def _serve(self, conn: _Connection) -> None:
        """The reader thread of an asyncio connection: waits in the ring only while replies
        are due, and resolves their futures on the loop."""
        error = "the worker exited before answering"
        try:
            while True:
                with conn.state:
                    while not (conn.pending or conn.abandoned or conn.stopping):
                        if not conn.wanted.wait(_LOOP_CHECK_S):
                            loop = conn.loop() if conn.loop is not None else None
                            if loop is None or loop.is_closed():
                                # Its loop is gone (asyncio.run returned): so is the connection.
                                conn.stopping = conn.doomed = True
                    if conn.stopping and (
                        not (conn.pending or conn.abandoned) or time.monotonic() > self._stop_by
                    ):
                        error = "the client closed before the worker answered"
                        return
                try:
                    reply = self._receive(conn, time.monotonic_ns() + _READER_SLICE_NS, SPIN_NS, 0)
                except WorkerUnavailable as exc:
                    error = exc.safe_message
                    return
                except ProtocolError as exc:
                    self._settle(conn, exc.request_id or 0, None, exc)
                    continue
                if reply is not None:
                    self._settle(conn, reply.request_id, reply, None)
        finally:
            self._fail_all(conn, error)
            conn.use.release()
            if conn.doomed or self._exit_reason is not None:
                conn.doomed = True
                self._close_if_idle(conn)

    def _settle(self, conn: _Connection, request_id: int, reply: Frame | None, error: ProtocolError | None) -> None:
        with conn.state:
            waiter = conn.pending.pop(request_id, None)
            if waiter is not None:
                waiter.reply = reply
                waiter.error = error
        if waiter is None:
            if reply is not None:
                self._deliver_late(conn, reply)
            else:
                with conn.state:
                    conn.abandoned.pop(request_id, None)
            return
        loop = conn.loop() if conn.loop is not None else None
        try:
            if loop is None:
                return  # The loop is gone, and with it whoever awaited this future.
            if reply is not None:
                loop.call_soon_threadsafe(_resolve, waiter.future, reply)
            elif error is not None:
                loop.call_soon_threadsafe(_fail, waiter.future, error)
        except RuntimeError:
            pass  # The loop is closed: nothing awaits this future any more.

    def _fail_all(self, conn: _Connection, message: str) -> None:
        failed: list[tuple[_AsyncWaiter, WorkerUnavailable]] = []
        with conn.state:
            for request_id, waiter in conn.pending.items():
                waiter.error = WorkerUnavailable(message, request_id=request_id, reached_worker=True)
                failed.append((waiter, waiter.error))
            conn.pending.clear()
            for request_id in conn.abandoned:
                self._routes.pop(request_id, None)
            conn.abandoned.clear()
        loop = conn.loop() if conn.loop is not None else None
        if loop is None:
            return  # The loop is gone, and with it whoever awaited these futures.
        for waiter, error in failed:
            try:
                loop.call_soon_threadsafe(_fail, waiter.future, error)
            except RuntimeError:
                pass  # The loop is closed: nothing awaits this future any more.

    # -- cancel --------------------------------------------------------------------------------

    def cancel(self, request_id: int) -> None:
        if self._stdio is not None:
            self._stdio.cancel(request_id)
            return
        conn = self._routes.get(request_id)
        if conn is None:
            return  # Answered meanwhile: nothing to cancel.
        frame = encode_frame(Frame(kind=Kind.CANCEL, request_id=request_id))
        with conn.state:
            status = lib.MOLT_SHM_CLOSED if conn.closed else lib.molt_shm_send(conn.handle, frame, len(frame))
        if status != 0:
            # The worker still answers the call at its deadline; nothing else to do.
            logger.debug("cancel of request %d not sent: %s", request_id, _status_name(status))


def _thread_ended(transport_ref: Callable[[], ShmTransport | None], conn: _Connection) -> None:
    transport = transport_ref()
    if transport is not None and not conn.retired:
        conn.doomed = True
        transport._close_if_idle(conn)


def _status_name(status: int) -> str:
    for name in dir(lib):
        if name.startswith("MOLT_SHM_") and getattr(lib, name) == status:
            return name
    return str(status)
