"""The stdio transport: a worker the client spawns, frames over its stdin and stdout.

Each frame is preceded by its u32 LE length (``docs/protocol.md``). Callers on any thread
write their call under a write lock. Replies are read by whoever holds the *read role*, a lock
that at most one thread holds, and handed to the caller waiting for that ``request_id``:

- A thread caller that finds the role free takes it and reads until its own reply arrives,
  handing any other reply it reads to its caller. A lone caller (a sync Django worker) thus
  gets its reply with no thread hand-off at all.
- A thread caller that finds the role taken waits to be handed its reply.
- One serving thread per worker takes the role whenever calls are waiting that no caller is
  reading for: asyncio callers (the event loop never blocks on a read; their futures are
  resolved with ``loop.call_soon_threadsafe``), callers that found the role taken, and calls
  the client abandoned (their late replies go to ``after_recv``). It sleeps otherwise.

Nothing can be left waiting with nobody reading: a waiter is registered before its caller
tries the role, and whoever releases the role checks for waiters afterwards and wakes the
serving thread if there are any. So there is never one thread per call, and the only hand-off
is for replies that another thread happened to read.

The worker is a :class:`~molt_accel._transports._process.WorkerProcess`: its reaper thread
collects the exit, so a dead worker never lingers as a zombie, and another thread forwards its
stderr, line by line, to the ``molt_accel.worker`` logger.

Writes never wait past the caller's deadline: stdin is non-blocking, and a full pipe (a worker
that stopped reading) is waited on with ``poll`` bounded by the deadline. A frame cut off half
way would corrupt the stream, so the worker is then killed and restarted. An asyncio caller
writes from the event loop: that write can wait only when the worker has stopped reading a
full pipe buffer, and never past the call's deadline.
"""

from __future__ import annotations

import asyncio
import math
import logging
import os
import select
import struct
import subprocess
import threading
import time
from collections.abc import Callable

from .._exceptions import ProtocolError, Timeout, WorkerUnavailable
from .._frame import HEADER_LEN, Frame, Kind, decode_frame, encode_frame
from .._config import ClientConfig
from ._base import LateReplyHandler, Transport
from ._process import CLOSE_GRACE_S, Liveness, WorkerProcess, log_unknown_reply

__all__ = ["StdioTransport"]

logger = logging.getLogger("molt_accel")

_LENGTH_PREFIX = struct.Struct("<I")
# The first read buffer; it grows to the largest reply seen.
_INITIAL_BUFFER = 1 << 16
# A cancel may be written from the event loop: it gets this long to find room in the pipe.
_CANCEL_WRITE_BUDGET_NS = 20_000_000


class _Waiter:
    """One caller waiting for the reply to ``request_id``.

    ``reply`` or ``error`` is set, under the transport's state lock, by whoever takes the
    waiter out of the pending table; ``wake`` is called once, after that.
    """

    __slots__ = ("request_id", "entry", "sent_ns", "reply", "error", "_lock", "_loop", "_future")

    def __init__(self, request_id: int, entry: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.request_id = request_id
        self.entry = entry
        self.sent_ns = 0
        self.reply: Frame | None = None
        self.error: WorkerUnavailable | ProtocolError | None = None
        self._loop = loop
        if loop is None:
            # A lock created held is the cheapest one-shot wake-up in CPython: the caller
            # blocks acquiring it and the reader releases it.
            self._lock = threading.Lock()
            self._lock.acquire()
        else:
            self._future: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        if self._loop is None:
            self._lock.release()
            return
        try:
            self._loop.call_soon_threadsafe(_settle, self._future)
        except RuntimeError:
            # The loop is closed: nothing can be awaiting this future any more.
            pass

    def wait(self, timeout_s: float) -> bool:
        return self._lock.acquire(timeout=max(timeout_s, 0.0))

    def done(self) -> bool:
        return self.reply is not None or self.error is not None

    async def await_wake(self) -> None:
        await self._future

    def outcome(self) -> Frame:
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return self.reply


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class StdioTransport(Transport):
    """A worker spawned with ``--stdio``, spoken to over its stdin and stdout."""

    name = "stdio"

    def __init__(self, config: ClientConfig, *, next_request_id: Callable[[], int], late_reply: LateReplyHandler) -> None:
        super().__init__(config, next_request_id=next_request_id, late_reply=late_reply)
        self._command = self.config.worker_command(["--stdio"])
        # Guards _pending, _abandoned, _stopping, and the recording of the worker's death
        # together with them.
        self._state_lock = threading.Lock()
        # Signalled (under _state_lock) when calls may be waiting with nobody reading for them.
        self._reader_wanted = threading.Condition(self._state_lock)
        # Serializes whole frames on the worker's stdin; taken before _state_lock, never after.
        self._write_lock = threading.Lock()
        # The read role: its holder alone reads stdout and owns the read buffer.
        self._read_role = threading.Lock()
        self._pending: dict[int, _Waiter] = {}
        self._abandoned: dict[int, _Waiter] = {}
        self._stopping = False
        # The read buffer, reused by every read: bytes [0, _filled) were read and are not
        # delivered yet (the start of a frame still arriving).
        self._inbuf = bytearray(_INITIAL_BUFFER)
        self._inbuf_view = memoryview(self._inbuf)
        self._filled = 0
        # Set once the worker sent a malformed frame: its later output is ignored until EOF.
        self._stream_broken: str | None = None
        self._worker: WorkerProcess | None = None
        # The worker once spawned; before that, why it could not be.
        self._liveness: Liveness = Liveness()
        self._stdin_fd = -1
        self._stdout_fd = -1
        self._serving_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        try:
            worker = WorkerProcess.spawn(self._command, stdout=subprocess.PIPE, label="stdio")
        except WorkerUnavailable as exc:
            self._liveness.mark_gone(exc.safe_message)
            raise
        assert worker.stdout is not None
        self._worker = self._liveness = worker
        self._stdin_fd = worker.stdin.fileno()
        self._stdout_fd = worker.stdout.fileno()
        os.set_blocking(self._stdin_fd, False)
        os.set_blocking(self._stdout_fd, False)
        self._serving_thread = threading.Thread(
            target=self._serve_waiters, name=f"molt-stdio-reader-{worker.pid}", daemon=True
        )
        self._serving_thread.start()
        self._handshake(worker)

    def _handshake(self, worker: WorkerProcess) -> None:
        request_id = self.next_request_id()
        ping = encode_frame(Frame(kind=Kind.PING, request_id=request_id))
        wait_until_ns = time.monotonic_ns() + self.config.start_timeout_ms * 1_000_000
        try:
            reply = self.exchange(request_id, "", ping, wait_until_ns)
        except Timeout:
            worker.kill("the worker did not answer its first ping in time")
            raise WorkerUnavailable("the worker did not answer its first ping in time") from None
        except WorkerUnavailable:
            # Let the reaper collect the exit status, so the reason says how it ended.
            worker.wait_for_exit()
            raise WorkerUnavailable(f"the worker exited during start-up ({self.exit_reason})") from None
        if reply.kind is not Kind.PONG:
            worker.kill("the worker answered its first ping with something else")
            raise WorkerUnavailable("the worker does not speak the molt protocol")

    def close(self) -> None:
        worker = self._worker
        if worker is None:
            return
        with self._write_lock:
            worker.close_stdin()
            self._stdin_fd = -1
        # EOF on stdin: the worker finishes or cancels what is in flight, flushes its replies
        # and exits; whoever reads delivers those replies, the reaper collects the exit.
        worker.wait_or_kill()
        with self._state_lock:
            self._stopping = True
            self._reader_wanted.notify_all()
        if self._serving_thread is not None:
            self._serving_thread.join(timeout=CLOSE_GRACE_S)
        # No reader may be left on the fd when it closes (its number could be reused).
        with self._read_role:
            worker.release()
            self._stdout_fd = -1

    def forget_after_fork(self) -> None:
        self._liveness.mark_gone("the worker belongs to the parent process")
        self._pending.clear()
        self._abandoned.clear()
        if self._worker is not None:
            self._worker.forget()

    @property
    def _spawned(self) -> WorkerProcess:
        """The worker, from the paths that run only once start() spawned it."""
        assert self._worker is not None
        return self._worker

    # -- properties ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._worker is not None and not self._worker.gone

    @property
    def exit_reason(self) -> str | None:
        return self._liveness.exit_reason

    @property
    def in_flight(self) -> int:
        with self._state_lock:
            return len(self._pending) + len(self._abandoned)

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    # -- calls ---------------------------------------------------------------------------------

    def exchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        waiter = _Waiter(request_id, entry)
        self._send(waiter, frame, wait_until_ns)
        if not self._wait_reading(waiter, wait_until_ns) and self._abandon(waiter):
            raise Timeout("the worker did not answer before the deadline", request_id=request_id)
        return waiter.outcome()

    def _wait_reading(self, waiter: _Waiter, wait_until_ns: int) -> bool:
        """Waits for ``waiter``'s reply, reading it itself if the read role is free. False if
        ``wait_until_ns`` passed first."""
        if self._read_role.acquire(blocking=False):
            try:
                while not waiter.done() and self._read_available(wait_until_ns):
                    pass
            finally:
                self._release_read_role()
            if waiter.done():
                return True
        return waiter.wait((wait_until_ns - time.monotonic_ns()) / 1e9) or waiter.done()

    async def aexchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        waiter = _Waiter(request_id, entry, asyncio.get_running_loop())
        self._send(waiter, frame, wait_until_ns)
        with self._state_lock:
            # An asyncio caller never reads: the serving thread reads for it.
            self._reader_wanted.notify()
        try:
            async with asyncio.timeout((wait_until_ns - time.monotonic_ns()) / 1e9):
                await waiter.await_wake()
        except TimeoutError:
            if self._abandon(waiter):
                raise Timeout("the worker did not answer before the deadline", request_id=request_id) from None
        except asyncio.CancelledError:
            if not self._abandon(waiter) and waiter.reply is not None:
                # The reply won the race with the cancellation: account for it as a late one.
                self.late_reply(entry, waiter.reply, waiter.sent_ns)
            raise
        return waiter.outcome()

    def cancel(self, request_id: int) -> None:
        frame = encode_frame(Frame(kind=Kind.CANCEL, request_id=request_id))
        try:
            self._write(frame, time.monotonic_ns() + _CANCEL_WRITE_BUDGET_NS)
        except (Timeout, WorkerUnavailable) as exc:
            # The worker still answers the call at its deadline; nothing else to do.
            logger.debug("cancel of request %d not sent: %s", request_id, exc.safe_message)

    def _send(self, waiter: _Waiter, frame: bytes, wait_until_ns: int) -> None:
        """Registers ``waiter`` and writes its frame, registering under the write lock so that
        anything written after this returns reaches the worker after this frame."""
        request_id = waiter.request_id
        if not self._write_lock.acquire(timeout=max((wait_until_ns - time.monotonic_ns()) / 1e9, 0.0)):
            raise Timeout("the worker did not accept the call before the deadline", request_id=request_id)
        try:
            with self._state_lock:
                if not self.alive:
                    raise WorkerUnavailable(f"the worker is not running ({self.exit_reason})", request_id=request_id)
                self._pending[request_id] = waiter
            waiter.sent_ns = time.perf_counter_ns()
            try:
                self._write_locked(frame, wait_until_ns)
            except BaseException:
                with self._state_lock:
                    self._pending.pop(request_id, None)
                raise
        finally:
            self._write_lock.release()

    def _write(self, frame: bytes, wait_until_ns: int) -> None:
        if not self._write_lock.acquire(timeout=max((wait_until_ns - time.monotonic_ns()) / 1e9, 0.0)):
            raise Timeout("the worker's input stayed busy until the deadline")
        try:
            if not self.alive:
                raise WorkerUnavailable(f"the worker is not running ({self.exit_reason})")
            self._write_locked(frame, wait_until_ns)
        finally:
            self._write_lock.release()

    def _write_locked(self, frame: bytes, wait_until_ns: int) -> None:
        """Writes one length-prefixed frame; the caller holds the write lock.

        Raises Timeout if nothing could be written by the deadline (the stream is intact), and
        WorkerUnavailable (not reached) if the worker's stdin is gone.
        """
        if self._stdin_fd < 0:
            raise WorkerUnavailable("the client is closing")
        buffers: list[bytes] = [_LENGTH_PREFIX.pack(len(frame)), frame]
        unwritten: list[bytes] | list[memoryview] = buffers
        total = _LENGTH_PREFIX.size + len(frame)
        written = 0
        poller: select.poll | None = None
        while True:
            try:
                written += os.writev(self._stdin_fd, unwritten)
            except BlockingIOError:
                pass
            except OSError:
                # EPIPE: the worker is gone, so no worker will ever read this frame.
                self._spawned.kill("the worker's input is closed")
                raise WorkerUnavailable("the worker is not running") from None
            if written == total:
                return
            unwritten = _tail(buffers, written)
            if poller is None:
                poller = select.poll()
                poller.register(self._stdin_fd, select.POLLOUT)
            remaining_ms = (wait_until_ns - time.monotonic_ns()) // 1_000_000
            if remaining_ms <= 0 or not poller.poll(remaining_ms):
                if written:
                    self._spawned.kill("the worker stopped reading its input in the middle of a frame")
                raise Timeout("the worker did not accept the call before the deadline")

    def _abandon(self, waiter: _Waiter) -> bool:
        """Moves a waiter that stops waiting to the abandoned table, so its reply goes to
        ``late_reply``. False if the reply (or the worker's death) got there first."""
        with self._state_lock:
            if self._pending.pop(waiter.request_id, None) is None:
                return False
            self._abandoned[waiter.request_id] = waiter
            # The caller no longer reads; the serving thread reads the late reply.
            self._reader_wanted.notify()
            return True

    # -- reading -------------------------------------------------------------------------------

    def _release_read_role(self) -> None:
        self._read_role.release()
        # After the release, so that a waiter registered meanwhile is either seen here or
        # finds the role free when it tries it.
        with self._state_lock:
            if self._pending or self._abandoned:
                self._reader_wanted.notify()

    def _serve_waiters(self) -> None:
        """The serving thread: reads whenever calls wait that no caller reads for."""
        try:
            self._serve_until_stopped()
        except Exception:
            # A bug here must not leave callers waiting for replies nobody reads.
            logger.exception("molt stdio serving thread failed")
            self._spawned.kill("the client stopped reading the worker's output")
            self._on_worker_gone("the client stopped reading the worker's output")

    def _serve_until_stopped(self) -> None:
        while True:
            with self._state_lock:
                while not (self._pending or self._abandoned or self._stopping):
                    self._reader_wanted.wait()
                if self._stopping and not (self._pending or self._abandoned):
                    return
            with self._read_role:
                while self._has_waiters() and self._read_available(None):
                    pass

    def _has_waiters(self) -> bool:
        with self._state_lock:
            return bool(self._pending or self._abandoned)

    def _read_available(self, wait_until_ns: int | None) -> bool:
        """Reads what the worker wrote, waiting for it until ``wait_until_ns`` (None: no
        limit), and delivers every complete reply. The caller holds the read role. False if
        the wait timed out or the worker is gone (its waiters have been failed then)."""
        if self._liveness.recorded_reason is not None and not self._pending and not self._abandoned:
            return False
        try:
            count = os.readv(self._stdout_fd, [self._inbuf_view[self._filled :]])
        except BlockingIOError:
            if wait_until_ns is None:
                timeout_ms = -1
            else:
                timeout_ms = math.ceil((wait_until_ns - time.monotonic_ns()) / 1e6)
                if timeout_ms <= 0:
                    return False
            poller = select.poll()
            poller.register(self._stdout_fd, select.POLLIN)
            return bool(poller.poll(timeout_ms)) or wait_until_ns is None
        except OSError:
            count = 0
        if not count:
            if self._stream_broken is not None:
                reason = self._stream_broken
            elif self._filled:
                reason = "the worker's output ended in the middle of a frame"
            else:
                reason = "the worker exited"
            self._on_worker_gone(reason)
            return False
        if self._stream_broken is None:
            self._filled += count
            self._deliver_buffered()
        return True

    def _deliver_buffered(self) -> None:
        """Delivers every complete frame in the read buffer, then moves the start of the next
        one to the buffer's front (growing the buffer if that frame is larger); on a malformed
        frame, kills the worker and ignores the rest of its output."""
        buffer = self._inbuf_view
        filled = self._filled
        max_frame_bytes = self.config.max_frame_bytes
        offset = 0
        needed = 0
        while filled - offset >= _LENGTH_PREFIX.size:
            (frame_len,) = _LENGTH_PREFIX.unpack_from(buffer, offset)
            if not HEADER_LEN <= frame_len <= max_frame_bytes:
                self._break_stream(f"the worker sent a frame of {frame_len} bytes")
                return
            end = offset + _LENGTH_PREFIX.size + frame_len
            if end > filled:
                needed = end - offset
                break
            body = buffer[offset + _LENGTH_PREFIX.size : end]
            try:
                frame = decode_frame(body, max_frame_bytes)
            except ProtocolError as exc:
                if exc.request_id is None:
                    body.release()
                    self._break_stream(f"the worker sent a malformed frame: {exc.safe_message}")
                    return
                self._deliver_error(exc.request_id, exc.safe_message)
            else:
                if frame.kind is not Kind.REPLY and frame.kind is not Kind.PONG:
                    body.release()
                    self._break_stream(f"the worker sent a {frame.kind.name} frame")
                    return
                self._deliver(frame)
            body.release()
            offset = end
        rest = filled - offset
        if offset and rest:
            buffer[:rest] = buffer[offset:filled]  # memmove: the regions may overlap
        self._filled = rest
        if needed > len(self._inbuf):
            grown = bytearray(needed)
            grown[:rest] = buffer[:rest]
            buffer.release()
            self._inbuf, self._inbuf_view = grown, memoryview(grown)

    def _break_stream(self, detail: str) -> None:
        self._stream_broken = "the worker sent a malformed frame"
        self._filled = 0
        self._spawned.kill(detail)

    def _deliver(self, frame: Frame) -> None:
        late = None
        with self._state_lock:
            waiter = self._pending.pop(frame.request_id, None)
            if waiter is not None:
                waiter.reply = frame
            else:
                late = self._abandoned.pop(frame.request_id, None)
        if waiter is not None:
            waiter.wake()
        elif late is not None:
            self.late_reply(late.entry, frame, late.sent_ns)
        else:
            log_unknown_reply(frame)

    def _deliver_error(self, request_id: int, reason: str) -> None:
        with self._state_lock:
            waiter = self._pending.pop(request_id, None)
            if waiter is not None:
                waiter.error = ProtocolError(
                    f"the worker sent a reply the client does not understand: {reason}", request_id=request_id
                )
            self._abandoned.pop(request_id, None)
        if waiter is not None:
            waiter.wake()

    def _on_worker_gone(self, reason: str) -> None:
        """Fails every waiter at once: their replies can no longer come."""
        with self._state_lock:
            self._liveness.mark_gone(reason)
            waiters = list(self._pending.values())
            self._pending.clear()
            self._abandoned.clear()
            for waiter in waiters:
                waiter.error = WorkerUnavailable(
                    "the worker exited before answering", request_id=waiter.request_id, reached_worker=True
                )
        for waiter in waiters:
            waiter.wake()


def _tail(buffers: list[bytes], offset: int) -> list[memoryview]:
    """The parts of ``buffers`` after the first ``offset`` bytes."""
    out = []
    for buffer in buffers:
        if offset >= len(buffer):
            offset -= len(buffer)
            continue
        out.append(memoryview(buffer)[offset:])
        offset = 0
    return out
