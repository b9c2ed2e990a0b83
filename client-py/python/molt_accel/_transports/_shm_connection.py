"""Shared-memory connections: one segment and its socket each (:class:`ShmConnection`), and
what all the connections of one transport share (:class:`ShmLink`): the worker's socket, the
set of open connections, whether the worker is gone, the routes :meth:`ShmLink.cancel`
follows, and how ring statuses become errors.

The thread and asyncio connection models (``_shm_thread``, ``_shm_async``) make and use
connections through the link; neither knows about the other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from .._config import ClientConfig
from .._exceptions import Busy, MoltError, ProtocolError, Timeout, WorkerUnavailable
from .._frame import Frame, Kind, decode_frame, encode_frame
from ._base import LateReplyHandler
from ._process import Liveness, WorkerProcess, log_unknown_reply

if TYPE_CHECKING:
    from ._shm_async import AsyncWaiter

__all__ = ["SPIN_NS", "ShmConnection", "ShmLink", "ffi", "lib", "send", "recv", "try_recv"]

try:
    from .._native import ffi, lib
except ImportError:  # built without its native module (a pure-Python install)
    # The transport then falls back to stdio before anything here is called.
    ffi = lib = None
# The hot path's calls, looked up once (None without the native module).
send: Any = lib.molt_shm_send if lib is not None else None
recv: Any = lib.molt_shm_recv if lib is not None else None
try_recv: Any = lib.molt_shm_try_recv if lib is not None else None

logger = logging.getLogger("molt_accel")

#: How long a waiting caller spins on the response ring before sleeping on its futex. The
#: worker answers a short call well within it, so a hot call never enters the kernel; past
#: it, spinning would only take a core from Django on a small machine (bench/ipc/README.md).
#: Read at every wait, so a benchmark may change it.
SPIN_NS = 20_000
# The first reply buffer of a connection; it grows to the largest reply seen.
_INITIAL_BUFFER = 1 << 16


class ShmConnection:
    """One segment and its socket.

    ``use`` is held by whoever calls into the handle as its reader (the calling thread, the
    reader thread, the draining thread); once the handle is closed it stays held forever, so
    nothing can call into a freed handle. ``state`` guards the tables, ``closed``, and every
    send made by a thread that does not hold ``use`` (asyncio sends, cancels).
    """

    __slots__ = (
        "handle", "use", "state", "wanted", "closed", "doomed", "retired", "stopping",
        "buf", "cap", "view", "out_len", "call_id", "sent_ns", "pending", "abandoned", "loop", "reader",
        "parked", "loop_buf", "loop_view", "loop_out_len",
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
        self.pending: dict[int, AsyncWaiter] = {}
        # request_id -> (entry, sent_ns) of abandoned calls whose late reply is due.
        self.abandoned: dict[int, tuple[str, int]] = {}
        # An asyncio connection's loop, weakly: the connection must not keep it alive.
        self.loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self.reader: threading.Thread | None = None
        # Whether the reader waits on ``wanted`` (no reply due), so a send must wake it.
        self.parked = False
        # An asyncio connection's second reply buffer, the loop thread's: replies the loop
        # takes itself land here, never in the reader's ``buf``. Fixed: a longer reply is
        # left to the reader, which grows its own.
        self.loop_buf: Any = None
        self.loop_view = memoryview(b"")
        self.loop_out_len: Any = None

    def grow(self, capacity: int) -> None:
        """A reply buffer of ``capacity`` bytes, reused by every receive, and a view of it to
        decode from without a copy."""
        self.cap = capacity
        self.buf = ffi.new("uint8_t[]", capacity)
        self.view = memoryview(ffi.buffer(self.buf, capacity))

    def for_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Makes this an event loop's connection: the loop's reply buffer, a weak reference
        to the loop."""
        self.loop = weakref.ref(loop)
        self.loop_buf = ffi.new("uint8_t[]", _INITIAL_BUFFER)
        self.loop_view = memoryview(ffi.buffer(self.loop_buf, _INITIAL_BUFFER))
        self.loop_out_len = ffi.new("uintptr_t *")

    def due(self) -> int:
        """Replies still to come on this connection, abandoned calls' included."""
        return (1 if self.call_id else 0) + len(self.pending) + len(self.abandoned)

    def event_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this connection serves, while it exists."""
        return self.loop() if self.loop is not None else None


class ShmLink:
    """What the connections of one shared-memory transport share.

    ``liveness`` is the transport's record of the worker: a :class:`WorkerProcess` it spawned
    (``worker``), or a bare :class:`Liveness` for a worker it attached to. Once it says gone,
    no new connection is made or used.
    """

    def __init__(self, config: ClientConfig, *, late_reply: LateReplyHandler) -> None:
        self.config = config
        self.late_reply = late_reply
        self.max_frame_bytes = config.max_frame_bytes
        self.socket_path = config.socket
        self.worker: WorkerProcess | None = None
        self.liveness: Liveness = Liveness()
        # Guards _conns, _loop_conns, stopping.
        self._state = threading.Lock()
        self._conns: set[ShmConnection] = set()
        # Weak: a connection must not keep its loop alive (its reader closes it once the loop
        # is closed).
        self._loop_conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ShmConnection] = (
            weakref.WeakKeyDictionary()
        )
        #: request_id -> the connection an abandoned call went out on, for :meth:`cancel`.
        self.routes: dict[int, ShmConnection] = {}
        #: Set by :meth:`stop`: no connection is made any more, and waits for late replies end
        #: at ``stop_by`` (``time.monotonic()``).
        self.stopping = False
        self.stop_by = 0.0
        self._forgotten = False

    def gone(self, reason: str) -> None:
        """The worker can no longer answer: calls made from now on are refused. Calls waiting
        on a ring fail on their own (their wait ends with CLOSED)."""
        self.liveness.mark_gone(reason)

    def break_worker(self, detail: str) -> None:
        """The worker wrote what no honest worker writes: a spawned one is killed (and
        restarted by the client), an attached one is left (every call fails until a new
        connection is made)."""
        if self.worker is not None:
            self.worker.kill(detail)
        else:
            self.gone(detail)
            logger.warning("molt worker: %s", detail)

    # -- connecting ----------------------------------------------------------------------------

    def connect(self, deadline: float) -> tuple[int, ShmConnection | None]:
        """One connection attempt, waiting for the worker's answer until ``deadline``
        (``time.monotonic()``); the new connection is registered (and closed with the
        transport). A connection made once the worker is gone or the transport stopping is
        closed at once and reported as ``MOLT_SHM_CLOSED``."""
        assert self.socket_path is not None
        out = ffi.new("MoltShm **")
        timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
        status = lib.molt_shm_connect(os.fsencode(self.socket_path), timeout_ms, out)
        if status != lib.MOLT_SHM_OK:
            return status, None
        conn = ShmConnection(out[0])
        with self._state:
            doomed = self.stopping or self.liveness.gone
            if not doomed:
                self._conns.add(conn)
        if doomed:
            # Outside _state: close_connection takes it (a plain Lock) to unregister.
            conn.use.acquire()
            self.close_connection(conn)
            return lib.MOLT_SHM_CLOSED, None
        return status, conn

    def connect_for_call(self, request_id: int, wait_until_ns: int) -> ShmConnection:
        """A new connection for a call that must be sent by ``wait_until_ns``: Timeout if the
        worker does not answer by then (a wedged worker is not a dead one), WorkerUnavailable
        (not reached) if it refuses."""
        if self.liveness.gone or self.stopping:
            raise WorkerUnavailable(f"the worker is not running ({self.liveness.exit_reason})", request_id=request_id)
        remaining_s = (wait_until_ns - time.monotonic_ns()) / 1e9
        status, conn = self.connect(time.monotonic() + min(remaining_s, self.config.start_timeout_ms / 1000))
        if conn is not None:
            return conn
        if status == lib.MOLT_SHM_CONNECT_FAILED and time.monotonic_ns() >= wait_until_ns:
            raise Timeout("the worker did not accept the call before the deadline", request_id=request_id)
        if status == lib.MOLT_SHM_CONNECT_FAILED:
            self.gone("the worker stopped accepting connections")
        elif status != lib.MOLT_SHM_CLOSED:
            self.gone(f"the worker refused a new connection ({status_name(status)})")
        raise WorkerUnavailable(f"the worker is not running ({self.liveness.exit_reason})", request_id=request_id)

    # -- the asyncio model's connection per loop -----------------------------------------------

    def loop_connection(self, loop: asyncio.AbstractEventLoop) -> ShmConnection | None:
        """The connection serving ``loop``, if one was made (it may be closed since)."""
        return self._loop_conns.get(loop)

    def serve_loop_with(self, loop: asyncio.AbstractEventLoop, conn: ShmConnection) -> ShmConnection:
        """Makes ``conn`` the connection serving ``loop``, unless an open one already does:
        then that one is returned and ``conn`` is left to the caller."""
        conn.for_loop(loop)
        with self._state:
            existing = self._loop_conns.get(loop)
            if existing is not None and not existing.closed:
                return existing
            self._loop_conns[loop] = conn
        return conn

    def loop_connections(self) -> list[ShmConnection]:
        with self._state:
            return list(self._loop_conns.values())

    # -- receiving and sending -----------------------------------------------------------------

    def receive(self, conn: ShmConnection, wait_until_ns: int, spin_ns: int, request_id: int) -> Frame | None:
        """The next reply on ``conn`` (whose ``use`` the caller holds), None at
        ``wait_until_ns``. Raises WorkerUnavailable when the worker is gone, ProtocolError
        for an answerable reply the client does not understand."""
        while True:
            status = recv(conn.handle, conn.buf, conn.cap, conn.out_len, wait_until_ns, spin_ns)
            if status == 0:
                try:
                    return decode_frame(conn.view[: conn.out_len[0]], self.max_frame_bytes)
                except ProtocolError as exc:
                    raise self.undecodable(exc, request_id) from None
            if status == lib.MOLT_SHM_TIMEOUT:
                return None
            if status == lib.MOLT_SHM_TOO_SMALL:
                needed = conn.out_len[0]
                if needed > self.max_frame_bytes:
                    self.break_worker(f"the worker sent a frame of {needed} bytes")
                    raise WorkerUnavailable(
                        "the worker sent a frame larger than max_frame_bytes", request_id=request_id, reached_worker=True
                    )
                conn.grow(needed)
                continue
            if status == lib.MOLT_SHM_CLOSED:
                self.gone("the worker exited")
            else:
                self.break_worker(f"the shared-memory ring is unusable ({status_name(status)})")
            raise WorkerUnavailable("the worker exited before answering", request_id=request_id, reached_worker=True)

    def undecodable(self, exc: ProtocolError, request_id: int) -> MoltError:
        """The error for a reply that did not decode: a ProtocolError for the call it answers,
        or WorkerUnavailable if it answers nothing (the worker is then broken)."""
        if exc.request_id is None:
            self.break_worker(f"the worker sent a malformed frame: {exc.safe_message}")
            return WorkerUnavailable("the worker sent a malformed frame", request_id=request_id, reached_worker=True)
        return ProtocolError(
            f"the worker sent a reply the client does not understand: {exc.safe_message}", request_id=exc.request_id
        )

    def send_failed(self, status: int, request_id: int, length: int) -> Exception:
        """The error for a send that returned ``status`` (not OK)."""
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
            self.gone("the worker exited")
        else:
            self.break_worker(f"the shared-memory ring is unusable ({status_name(status)})")
        return WorkerUnavailable(f"the worker is not running ({self.liveness.exit_reason})", request_id=request_id)

    def deliver_late(self, conn: ShmConnection, reply: Frame) -> None:
        """Hands the reply of an abandoned call to ``late_reply``."""
        with conn.state:
            late = conn.abandoned.pop(reply.request_id, None)
        if late is None:
            log_unknown_reply(reply)
            return
        self.routes.pop(reply.request_id, None)
        self.late_reply(late[0], reply, late[1])

    def cancel(self, request_id: int) -> None:
        """Sends Cancel for an abandoned call on the connection it went out on; best effort."""
        conn = self.routes.get(request_id)
        if conn is None:
            return  # Answered meanwhile: nothing to cancel.
        frame = encode_frame(Frame(kind=Kind.CANCEL, request_id=request_id))
        with conn.state:
            status = lib.MOLT_SHM_CLOSED if conn.closed else lib.molt_shm_send(conn.handle, frame, len(frame))
        if status != 0:
            # The worker still answers the call at its deadline; nothing else to do.
            logger.debug("cancel of request %d not sent: %s", request_id, status_name(status))

    @property
    def in_flight(self) -> int:
        with self._state:
            conns = list(self._conns)
        return sum(conn.due() for conn in conns)

    # -- closing -------------------------------------------------------------------------------

    def close_if_idle(self, conn: ShmConnection) -> None:
        """Closes ``conn`` now if nobody uses it; otherwise its user does, when done (it sees
        ``doomed``)."""
        if self._forgotten:
            return
        if conn.use.acquire(blocking=False):
            self.close_connection(conn)

    def close_connection(self, conn: ShmConnection) -> None:
        """Frees the handle; the caller holds ``conn.use``, which stays held."""
        with conn.state:
            if conn.closed:
                return
            conn.closed = True
            lib.molt_shm_close(conn.handle)
            for request_id in conn.abandoned:
                self.routes.pop(request_id, None)
            conn.abandoned.clear()
        with self._state:
            self._conns.discard(conn)
            loop = conn.event_loop()
            if loop is not None and self._loop_conns.get(loop) is conn:
                del self._loop_conns[loop]

    def stop(self, grace_s: float) -> None:
        """No connection is made from now on; waits for late replies end ``grace_s`` from now."""
        with self._state:
            self.stopping = True
            self.stop_by = time.monotonic() + grace_s

    def close_all(self) -> None:
        """Closes every connection, each now or by its user once it is done with it."""
        with self._state:
            conns = list(self._conns)
        for conn in conns:
            conn.doomed = True
            self.close_if_idle(conn)

    def forget(self) -> None:
        """In a forked child: forgets every inherited connection.

        Every inherited handle is forgotten, never closed: closing would mark the parent's
        segment closed and end its connection. Forgetting releases only this process's socket
        descriptor and mapping, and takes none of the handle's locks (a parent thread may have
        held one at the fork). A connection already marked closed may have been freed by a
        parent thread at the fork: it is left alone.
        """
        self._forgotten = True
        for conn in self._conns:
            if not conn.closed:
                conn.closed = True
                lib.molt_shm_forget(conn.handle)
        self._conns = set()
        self._loop_conns = weakref.WeakKeyDictionary()
        self.routes = {}


def status_name(status: int) -> str:
    """The ``MOLT_SHM_*`` name of a native status, for logs and messages."""
    for name in dir(lib):
        if name.startswith("MOLT_SHM_") and getattr(lib, name) == status:
            return name
    return str(status)
