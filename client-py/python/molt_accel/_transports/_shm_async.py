"""The shared-memory transport's asyncio model: a connection per event loop.

Tasks send from the loop (a send never blocks: a full ring is Busy), and one reader thread
per connection waits in ``molt_shm_recv`` only while replies are due. After every send the
loop takes whatever replies are already queued itself (``molt_shm_try_recv``, which never
waits) and resolves their futures on the spot; the reader takes the rest, every reply queued
when it wakes at once, and hands them to the loop in one ``loop.call_soon_threadsafe``. A
reader is woken by a send only when it is parked (no reply was due). No thread per call; the
loop never waits. A call that times out
or is cancelled stays on the loop's connection in its abandoned table, read by the same
reader.
"""

from __future__ import annotations

import asyncio
import threading
import time

from .._exceptions import MoltError, ProtocolError, Timeout, WorkerUnavailable
from .._frame import Frame, decode_frame
from . import _shm_connection
from ._base import LateReplyHandler
from ._shm_connection import _INITIAL_BUFFER, ShmConnection, ShmLink, send, try_recv

__all__ = ["AsyncWaiter", "LoopCalls"]

# A reader waits in slices of this long, so it notices close() promptly.
_READER_SLICE_NS = 100_000_000
# An idle reader checks this often whether its event loop was closed, to give the loop's
# connection back (one wake-up a second, nothing measurable).
_LOOP_CHECK_S = 1.0


class AsyncWaiter:
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



def _fail(future: asyncio.Future[Frame], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _resolve_all(waiters: list[AsyncWaiter]) -> None:
    """Resolves the futures of calls whose ``reply`` or ``error`` is set; on their loop."""
    for waiter in waiters:
        future = waiter.future
        if future.done():
            continue  # Cancelled meanwhile: the reply went to late_reply.
        if waiter.reply is not None:
            future.set_result(waiter.reply)
        else:
            assert waiter.error is not None
            future.set_exception(waiter.error)


class LoopCalls:
    """The calls of asyncio tasks over ``link``: one connection and one reader thread per
    event loop."""

    def __init__(self, link: ShmLink, *, late_reply: LateReplyHandler) -> None:
        self._link = link
        self._late_reply = late_reply
        # Connections being made for a loop; only ever touched from that loop's thread.
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Task[ShmConnection]] = {}

    async def aexchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        link = self._link
        loop = asyncio.get_running_loop()
        conn = link.loop_connection(loop)
        if conn is None or conn.closed:
            conn = await self._connect_loop(loop, request_id, wait_until_ns)
        future: asyncio.Future[Frame] = loop.create_future()
        waiter = AsyncWaiter(entry, future)
        with conn.state:
            if conn.closed or conn.stopping or link.liveness.gone:
                raise WorkerUnavailable(
                    f"the worker is not running ({link.liveness.exit_reason})", request_id=request_id
                )
            status = send(conn.handle, frame, len(frame))
            if status != 0:
                raise link.send_failed(status, request_id, len(frame))
            waiter.sent_ns = time.perf_counter_ns()
            conn.pending[request_id] = waiter
            queued = self._take_queued(conn)
            if not queued and conn.parked:
                conn.wanted.notify()
        if queued:
            self._settle_on_loop(conn, queued)
            with conn.state:
                if conn.parked and conn.pending:
                    conn.wanted.notify()  # replies are still due: the reader must wait for them
        # A timer handle, not asyncio.timeout: that one is a context manager, a Timeout
        # object and a task cancellation to turn into TimeoutError, on every call.
        timer = loop.call_later((wait_until_ns - time.monotonic_ns()) / 1e9, self._expire, conn, request_id, waiter)
        try:
            return await future
        except asyncio.CancelledError:
            if not self._abandon(conn, request_id, waiter) and waiter.reply is not None:
                # The reply won the race with the cancellation: account for it as a late one.
                self._late_reply(entry, waiter.reply, waiter.sent_ns)
            raise
        finally:
            timer.cancel()

    def _expire(self, conn: ShmConnection, request_id: int, waiter: AsyncWaiter) -> None:
        """The deadline of an asyncio call passed (on its loop): it fails with Timeout, unless
        its reply (or the worker's death) got there first and is on its way to the future."""
        if self._abandon(conn, request_id, waiter):
            _fail(waiter.future, Timeout("the worker did not answer before the deadline", request_id=request_id))

    def _take_queued(self, conn: ShmConnection) -> list[Frame | ProtocolError]:
        """The replies already queued in ``conn``'s response ring, taken and decoded by the
        loop's thread (the caller holds ``conn.state``, so the handle cannot be closed
        meanwhile). Stops at the first it cannot take: none queued, the reader receiving
        right now (it gets them), or one longer than the loop's buffer (left to the reader)."""
        queued: list[Frame | ProtocolError] = []
        out_len = conn.loop_out_len
        view = conn.loop_view
        max_frame_bytes = self._link.max_frame_bytes
        while try_recv(conn.handle, conn.loop_buf, _INITIAL_BUFFER, out_len) == 0:
            try:
                queued.append(decode_frame(view[: out_len[0]], max_frame_bytes))
            except ProtocolError as exc:
                queued.append(exc)
        return queued

    def _settle_on_loop(self, conn: ShmConnection, queued: list[Frame | ProtocolError]) -> None:
        """Hands the replies the loop took itself to their calls, on the loop: no thread hop."""
        settled: list[AsyncWaiter] = []
        for reply in queued:
            if isinstance(reply, ProtocolError):
                error = self._link.undecodable(reply, 0)
                if isinstance(error, WorkerUnavailable):
                    # The stream cannot be trusted any more: every call on it fails, and the
                    # reader ends (and closes it).
                    _resolve_all(settled)
                    self._stop_reading(conn, error.safe_message)
                    return
                waiter = self._claim(conn, reply.request_id or 0, None, error)
            else:
                waiter = self._claim(conn, reply.request_id, reply, None)
            if waiter is not None:
                settled.append(waiter)
        _resolve_all(settled)

    def _stop_reading(self, conn: ShmConnection, message: str) -> None:
        """Fails every call on ``conn`` now and tells its reader to end and close it."""
        self._fail_all(conn, message)
        with conn.state:
            conn.stopping = conn.doomed = True
            conn.wanted.notify()

    async def _connect_loop(self, loop: asyncio.AbstractEventLoop, request_id: int, wait_until_ns: int) -> ShmConnection:
        """The loop's connection, made once however many tasks ask at the same time.
        Connecting waits for the worker's answer, so it runs off the loop."""
        connecting = self._connecting.get(loop)
        if connecting is None:
            connecting = loop.create_task(asyncio.to_thread(self._loop_connection, loop, request_id, wait_until_ns))
            self._connecting[loop] = connecting
            connecting.add_done_callback(lambda _: self._connecting.pop(loop, None))
        # Shielded: one task being cancelled must not cancel the connection the others await.
        return await asyncio.shield(connecting)

    def _loop_connection(self, loop: asyncio.AbstractEventLoop, request_id: int, wait_until_ns: int) -> ShmConnection:
        link = self._link
        conn = link.loop_connection(loop)
        if conn is not None and not conn.closed:
            return conn
        conn = link.connect_for_call(request_id, wait_until_ns)
        serving = link.serve_loop_with(loop, conn)
        if serving is not conn:
            # Two tasks of this loop connected at once: keep the first connection.
            conn.use.acquire()
            link.close_connection(conn)
            return serving
        conn.reader = threading.Thread(target=self._serve, args=(conn,), name="molt-shm-reader", daemon=True)
        conn.use.acquire()  # the reader's for its whole life
        conn.reader.start()
        return conn

    def _abandon(self, conn: ShmConnection, request_id: int, waiter: AsyncWaiter) -> bool:
        """Moves a call whose awaiting stopped to the abandoned table, so its reply goes to
        ``late_reply``. False if the reply (or the worker's death) got there first."""
        with conn.state:
            if conn.pending.pop(request_id, None) is None:
                return False
            conn.abandoned[request_id] = (waiter.entry, waiter.sent_ns)
        self._link.routes[request_id] = conn
        return True

    def _serve(self, conn: ShmConnection) -> None:
        """The reader thread of an asyncio connection: waits in the ring only while replies
        are due, and hands every reply queued when it wakes to the loop at once."""
        link = self._link
        error = "the worker exited before answering"
        try:
            while True:
                with conn.state:
                    while not (conn.pending or conn.abandoned or conn.stopping):
                        conn.parked = True
                        woken = conn.wanted.wait(_LOOP_CHECK_S)
                        conn.parked = False
                        if not woken:
                            loop = conn.event_loop()
                            if loop is None or loop.is_closed():
                                # Its loop is gone (asyncio.run returned): so is the connection.
                                conn.stopping = conn.doomed = True
                    if conn.stopping and (
                        not (conn.pending or conn.abandoned) or time.monotonic() > link.stop_by
                    ):
                        error = "the client closed before the worker answered"
                        return
                settled: list[AsyncWaiter] = []
                try:
                    reply = link.receive(conn, time.monotonic_ns() + _READER_SLICE_NS, _shm_connection.SPIN_NS, 0)
                    while reply is not None:
                        waiter = self._claim(conn, reply.request_id, reply, None)
                        if waiter is not None:
                            settled.append(waiter)
                        reply = self._receive_queued(conn)
                except WorkerUnavailable as exc:
                    error = exc.safe_message
                    return
                except ProtocolError as exc:
                    waiter = self._claim(conn, exc.request_id or 0, None, exc)
                    if waiter is not None:
                        settled.append(waiter)
                finally:
                    if settled:
                        self._hand_to_loop(conn, settled)
        finally:
            self._fail_all(conn, error)
            conn.use.release()
            if conn.doomed or link.liveness.gone:
                conn.doomed = True
                link.close_if_idle(conn)

    def _receive_queued(self, conn: ShmConnection) -> Frame | None:
        """The next reply already queued on ``conn`` (whose ``use`` the caller holds), or None
        if there is none to take without waiting (or it is longer than the buffer: the next
        ``receive`` grows it). Raises as ``ShmLink.receive`` does."""
        if try_recv(conn.handle, conn.buf, conn.cap, conn.out_len) != 0:
            return None
        try:
            return decode_frame(conn.view[: conn.out_len[0]], self._link.max_frame_bytes)
        except ProtocolError as exc:
            raise self._link.undecodable(exc, 0) from None

    def _claim(
        self, conn: ShmConnection, request_id: int, reply: Frame | None, error: MoltError | None
    ) -> AsyncWaiter | None:
        """Takes the call ``request_id`` out of ``pending`` with its outcome set, for its
        future to be resolved on the loop; None if nobody awaits it any more (a late reply
        goes to ``late_reply``)."""
        with conn.state:
            waiter = conn.pending.pop(request_id, None)
            if waiter is not None:
                waiter.reply = reply
                waiter.error = error
        if waiter is None:
            if reply is not None:
                self._link.deliver_late(conn, reply)
            else:
                with conn.state:
                    conn.abandoned.pop(request_id, None)
        return waiter

    def _hand_to_loop(self, conn: ShmConnection, settled: list[AsyncWaiter]) -> None:
        """Resolves the futures of ``settled`` on their loop, in one callback (from the
        reader thread)."""
        loop = conn.event_loop()
        if loop is None:
            return  # The loop is gone, and with it whoever awaited these futures.
        try:
            loop.call_soon_threadsafe(_resolve_all, settled)
        except RuntimeError:
            pass  # The loop is closed: nothing awaits these futures any more.

    def _fail_all(self, conn: ShmConnection, message: str) -> None:
        failed: list[tuple[AsyncWaiter, WorkerUnavailable]] = []
        with conn.state:
            for request_id, waiter in conn.pending.items():
                waiter.error = WorkerUnavailable(message, request_id=request_id, reached_worker=True)
                failed.append((waiter, waiter.error))
            conn.pending.clear()
            for request_id in conn.abandoned:
                self._link.routes.pop(request_id, None)
            conn.abandoned.clear()
        loop = conn.event_loop()
        if loop is None:
            return  # The loop is gone, and with it whoever awaited these futures.
        for waiter, error in failed:
            try:
                loop.call_soon_threadsafe(_fail, waiter.future, error)
            except RuntimeError:
                pass  # The loop is closed: nothing awaits this future any more.

    # -- closing -------------------------------------------------------------------------------

    def stop(self) -> list[threading.Thread]:
        """Tells every loop's reader to finish (by the link's ``stop_by``); returns them, for
        the caller to join."""
        readers = []
        for conn in self._link.loop_connections():
            with conn.state:
                conn.stopping = True
                conn.wanted.notify_all()
            if conn.reader is not None:
                readers.append(conn.reader)
        return readers

    def forget(self) -> None:
        """In a forked child: drops the parent's loops' connections being made."""
        self._connecting = {}
