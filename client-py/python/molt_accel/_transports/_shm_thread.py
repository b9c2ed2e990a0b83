"""The shared-memory transport's thread model: a connection per calling thread.

Every thread gets its own connection (``threading.local``). A call sends into the request
ring and the calling thread itself waits in ``molt_shm_recv`` (spin, then futex; the GIL is
released) for its reply: no lock is contended and no other thread is woken. A thread has one
call in flight at a time, so a reply is always its own, checked by ``request_id``. When a call
is abandoned (deadline), that connection is *retired* to one draining thread that waits for
the late reply, and the caller's next call opens a new one; a thread that ends gives its
connection back.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from .._exceptions import ProtocolError, Timeout, WorkerUnavailable
from .._frame import Frame, decode_frame
from . import _shm_connection
from ._process import log_unknown_reply
from ._shm_connection import ShmConnection, ShmLink, recv, send

__all__ = ["ThreadCalls"]

# The draining thread waits in slices of this long, so it notices close() promptly.
_DRAIN_SLICE_NS = 100_000_000
# Retired connections waiting for late replies: past this many (a wedged worker with many
# callers timing out), the oldest is closed and its late replies are forgotten (the worker
# cancels their calls when the connection closes).
_MAX_RETIRED = 64


class _ThreadSlot:
    """What a thread's ``threading.local`` holds; its finalizer returns the connection."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: ShmConnection) -> None:
        self.conn: ShmConnection | None = conn


class ThreadCalls:
    """The calls of threads over ``link``: one connection per thread, one draining thread
    for the connections of abandoned calls."""

    def __init__(self, link: ShmLink) -> None:
        self._link = link
        self._local = threading.local()
        # Guards _retired, _drainer, _stopping.
        self._state = threading.Lock()
        self._retired_wanted = threading.Condition(self._state)
        self._retired: list[ShmConnection] = []
        self._drainer: threading.Thread | None = None
        self._stopping = False

    def exchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        link = self._link
        slot = getattr(self._local, "slot", None)
        conn = slot.conn if slot is not None else None
        if conn is None or conn.doomed or link.liveness.gone:
            conn = self._new_connection(request_id, wait_until_ns)
        if not conn.use.acquire(blocking=False):
            # Only close() takes a thread's connection from it.
            raise WorkerUnavailable("the client is closing", request_id=request_id)
        abandoned = False
        try:
            if conn.closed:
                raise WorkerUnavailable("the client is closing", request_id=request_id)
            status = send(conn.handle, frame, len(frame))
            if status != 0:
                raise link.send_failed(status, request_id, len(frame))
            conn.sent_ns = time.perf_counter_ns()
            conn.call_id = request_id
            spin_ns = _shm_connection.SPIN_NS
            # The common case inline (a reply that fits the buffer); receive() does the rest.
            if recv(conn.handle, conn.buf, conn.cap, conn.out_len, wait_until_ns, spin_ns) == 0:
                try:
                    reply = decode_frame(conn.view[: conn.out_len[0]], link.max_frame_bytes)
                except ProtocolError as exc:
                    raise link.undecodable(exc, request_id) from None
                if reply.request_id == request_id:
                    return reply
                log_unknown_reply(reply)
            while True:
                received = link.receive(conn, wait_until_ns, spin_ns, request_id)
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
                link.close_if_idle(conn)

    def adopt(self, conn: ShmConnection) -> None:
        """Makes ``conn`` the calling thread's connection."""
        slot = _ThreadSlot(conn)
        self._local.slot = slot
        # When the thread ends its local goes, and the connection with it.
        weakref.finalize(slot, _thread_ended, weakref.ref(self._link), conn)

    def _new_connection(self, request_id: int, wait_until_ns: int) -> ShmConnection:
        conn = self._link.connect_for_call(request_id, wait_until_ns)
        self.adopt(conn)
        return conn

    # -- abandoned calls -----------------------------------------------------------------------

    def _retire(self, conn: ShmConnection, request_id: int, entry: str) -> None:
        """Hands a connection whose call was abandoned to the draining thread, which waits for
        the late reply; the caller's thread opens a new connection for its next call."""
        slot = getattr(self._local, "slot", None)
        if slot is not None and slot.conn is conn:
            slot.conn = None
        with conn.state:
            conn.abandoned[request_id] = (entry, conn.sent_ns)
        self._link.routes[request_id] = conn
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
            self._link.close_if_idle(evicted)

    def _drain(self) -> None:
        """The draining thread: waits for the late replies of retired connections, then
        closes them."""
        link = self._link
        while True:
            with self._state:
                while not self._retired and not self._stopping:
                    self._retired_wanted.wait()
                if not self._retired:
                    return
                conns = list(self._retired)
            slice_ns = max(_DRAIN_SLICE_NS // len(conns), 1_000_000)
            for conn in conns:
                finished = True
                if conn.use.acquire(blocking=False):
                    try:
                        finished = self._drain_one(conn, slice_ns)
                    finally:
                        conn.use.release()
                if finished or (self._stopping and time.monotonic() > link.stop_by):
                    with self._state:
                        if conn in self._retired:
                            self._retired.remove(conn)
                    conn.doomed = True
                    link.close_if_idle(conn)

    def _drain_one(self, conn: ShmConnection, slice_ns: int) -> bool:
        """Waits up to ``slice_ns`` for a late reply on ``conn``; True once nothing more can
        come."""
        if conn.closed:
            return True
        try:
            reply = self._link.receive(conn, time.monotonic_ns() + slice_ns, 0, 0)
        except WorkerUnavailable:
            return True
        except ProtocolError as exc:
            with conn.state:
                conn.abandoned.pop(exc.request_id or 0, None)
        else:
            if reply is not None:
                self._link.deliver_late(conn, reply)
        return not conn.abandoned

    # -- closing -------------------------------------------------------------------------------

    def stop(self) -> threading.Thread | None:
        """Tells the draining thread to finish (by the link's ``stop_by``); returns it, for
        the caller to join."""
        with self._state:
            self._stopping = True
            self._retired_wanted.notify_all()
            return self._drainer

    def forget(self) -> None:
        """In a forked child: drops the parent's threads' connections (the link forgets the
        handles)."""
        self._retired = []
        self._local = threading.local()


def _thread_ended(link_ref: Callable[[], ShmLink | None], conn: ShmConnection) -> None:
    link = link_ref()
    if link is not None and not conn.retired:
        conn.doomed = True
        link.close_if_idle(conn)
