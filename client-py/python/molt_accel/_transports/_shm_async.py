"""The shared-memory transport's asyncio model: a connection per event loop.

Tasks send from the loop (a send never blocks: a full ring is Busy), and one reader thread
per connection waits in ``molt_shm_recv`` only while replies are due, resolving futures with
``loop.call_soon_threadsafe``. No thread per call; the loop never waits. A call that times out
or is cancelled stays on the loop's connection in its abandoned table, read by the same
reader.
"""

from __future__ import annotations

import asyncio
import threading
import time

from .._exceptions import ProtocolError, Timeout, WorkerUnavailable
from .._frame import Frame
from . import _shm_connection
from ._base import LateReplyHandler
from ._shm_connection import ShmConnection, ShmLink, send

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

    def outcome(self) -> Frame:
        if self.reply is None:
            assert self.error is not None
            raise self.error
        return self.reply


def _resolve(future: asyncio.Future[Frame], frame: Frame) -> None:
    if not future.done():
        future.set_result(frame)


def _fail(future: asyncio.Future[Frame], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


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
        waiter = AsyncWaiter(entry, loop.create_future())
        with conn.state:
            if conn.closed or conn.stopping or link.liveness.gone:
                raise WorkerUnavailable(
                    f"the worker is not running ({link.liveness.exit_reason})", request_id=request_id
                )
            status = send(conn.handle, frame, len(frame))
            if status != 0:
                error = link.send_failed(status, request_id, len(frame))
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
                self._late_reply(entry, waiter.reply, waiter.sent_ns)
            raise

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
        are due, and resolves their futures on the loop."""
        link = self._link
        error = "the worker exited before answering"
        try:
            while True:
                with conn.state:
                    while not (conn.pending or conn.abandoned or conn.stopping):
                        if not conn.wanted.wait(_LOOP_CHECK_S):
                            loop = conn.event_loop()
                            if loop is None or loop.is_closed():
                                # Its loop is gone (asyncio.run returned): so is the connection.
                                conn.stopping = conn.doomed = True
                    if conn.stopping and (
                        not (conn.pending or conn.abandoned) or time.monotonic() > link.stop_by
                    ):
                        error = "the client closed before the worker answered"
                        return
                try:
                    reply = link.receive(conn, time.monotonic_ns() + _READER_SLICE_NS, _shm_connection.SPIN_NS, 0)
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
            if conn.doomed or link.liveness.gone:
                conn.doomed = True
                link.close_if_idle(conn)

    def _settle(self, conn: ShmConnection, request_id: int, reply: Frame | None, error: ProtocolError | None) -> None:
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
            return
        loop = conn.event_loop()
        try:
            if loop is None:
                return  # The loop is gone, and with it whoever awaited this future.
            if reply is not None:
                loop.call_soon_threadsafe(_resolve, waiter.future, reply)
            elif error is not None:
                loop.call_soon_threadsafe(_fail, waiter.future, error)
        except RuntimeError:
            pass  # The loop is closed: nothing awaits this future any more.

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
