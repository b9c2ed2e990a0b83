"""The stdio transport: a worker the client spawns, frames over its stdin and stdout.

Each frame is preceded by its u32 LE length (``docs/protocol.md``). Callers on any thread
write their call under a write lock; one reader thread per worker reads every reply and
hands it to the caller waiting for that ``request_id``. A second thread forwards the worker's
stderr, line by line, to the ``molt_accel.worker`` logger.

Why a reader thread rather than a reader on the event loop: one pipe is shared by callers on
many threads and possibly several event loops, so replies must be demultiplexed in one place
that serves them all. The reader wakes a thread caller by releasing a lock it waits on, and an
asyncio caller by resolving its future with ``loop.call_soon_threadsafe``; either way there is
one thread per worker, never one per call, and the event loop never blocks on a read.

Writes never wait past the caller's deadline: stdin is non-blocking, and a full pipe (a worker
that stopped reading) is waited on with ``poll`` bounded by the deadline. A frame cut off half
way would corrupt the stream, so the worker is then killed and restarted.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import re
import select
import signal
import struct
import subprocess
import threading
import time
from typing import IO

from .._exceptions import ProtocolError, Timeout, WorkerUnavailable
from .._frame import HEADER_LEN, Frame, Kind, decode_frame, encode_frame
from ._base import Transport

__all__ = ["StdioTransport"]

logger = logging.getLogger("molt_accel")
worker_logger = logging.getLogger("molt_accel.worker")

_LENGTH_PREFIX = struct.Struct("<I")
# How long close() lets in-flight calls finish after closing the worker's stdin.
_CLOSE_GRACE_S = 2.0
# How long the reader waits for a worker whose stdout closed to exit before killing it.
_REAP_WAIT_S = 1.0
# A cancel may be written from the event loop: it gets this long to find room in the pipe.
_CANCEL_WRITE_BUDGET_NS = 20_000_000
_WORKER_LOG_LINE = re.compile(r"^molt_worker (ERROR|WARN|INFO|DEBUG|TRACE): ")
_WORKER_LOG_LEVELS = {
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG,
}


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


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class StdioTransport(Transport):
    """A worker spawned with ``--stdio``, spoken to over its stdin and stdout."""

    name = "stdio"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._command = self.config.worker_command(["--stdio"])
        # Guards _pending, _abandoned and the transition to dead (_exit_reason).
        self._state_lock = threading.Lock()
        # Serializes whole frames on the worker's stdin; taken before _state_lock, never after.
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Waiter] = {}
        self._abandoned: dict[int, _Waiter] = {}
        self._exit_reason: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin_fd = -1
        self._reader: threading.Thread | None = None
        self._stderr_forwarder: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        try:
            proc = subprocess.Popen(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
            )
        except OSError as exc:
            # The command (a path) goes to the operator's log, never into the error.
            logger.error("could not start the molt worker %s: %s", self._command, exc)
            code = errno.errorcode.get(exc.errno or 0, "error")
            self._exit_reason = f"the worker could not be started ({code})"
            raise WorkerUnavailable(self._exit_reason) from None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self._stdin_fd = proc.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        self._reader = threading.Thread(
            target=self._read_replies, args=(proc,), name=f"molt-stdio-reader-{proc.pid}", daemon=True
        )
        self._stderr_forwarder = threading.Thread(
            target=_forward_stderr, args=(proc.stderr,), name=f"molt-stdio-stderr-{proc.pid}", daemon=True
        )
        self._reader.start()
        self._stderr_forwarder.start()
        self._handshake()

    def _handshake(self) -> None:
        request_id = self.next_request_id()
        ping = encode_frame(Frame(kind=Kind.PING, request_id=request_id))
        wait_until_ns = time.monotonic_ns() + self.config.start_timeout_ms * 1_000_000
        try:
            reply = self.exchange(request_id, "", ping, wait_until_ns)
        except Timeout:
            self._kill("the worker did not answer its first ping in time")
            raise WorkerUnavailable("the worker did not answer its first ping in time") from None
        except WorkerUnavailable:
            # Let the reader reap the worker so the reason carries its exit status.
            if self._reader is not None:
                self._reader.join(timeout=_REAP_WAIT_S + 1.0)
            raise WorkerUnavailable(f"the worker exited during start-up ({self.exit_reason})") from None
        if reply.kind is not Kind.PONG:
            self._kill("the worker answered its first ping with something else")
            raise WorkerUnavailable("the worker does not speak the molt protocol")

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with self._write_lock:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass  # Already broken: the worker is gone, which is what close wants.
            self._stdin_fd = -1
        # EOF on stdin: the worker finishes or cancels what is in flight, flushes its replies
        # and exits; the reader delivers those replies and reaps it.
        reader = self._reader
        if reader is not None:
            reader.join(timeout=_CLOSE_GRACE_S)
            if reader.is_alive():
                self._kill("closed by the client")
                reader.join()
        if self._stderr_forwarder is not None:
            self._stderr_forwarder.join(timeout=_REAP_WAIT_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def forget_after_fork(self) -> None:
        # The child got copies of the pipe ends. Closing them matters: a child holding the
        # worker's stdin open would keep it from seeing EOF when the parent goes away. The
        # worker itself belongs to the parent, so it is neither signalled nor waited for.
        proc = self._proc
        self._exit_reason = "the worker belongs to the parent process"
        self._pending.clear()
        self._abandoned.clear()
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    os.close(stream.fileno())
                except (OSError, ValueError):
                    pass  # Already closed in the parent before the fork.
        # Popen would otherwise try to reap a process that is not this child's child.
        proc.returncode = 0
        self._proc = None

    def _kill(self, reason: str) -> None:
        with self._state_lock:
            if self._exit_reason is None:
                self._exit_reason = reason
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass  # Already exited; the reader reaps it.
        logger.warning("molt worker killed: %s", reason)

    # -- properties ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._exit_reason is None and self._proc is not None

    @property
    def exit_reason(self) -> str | None:
        return self._exit_reason

    @property
    def in_flight(self) -> int:
        with self._state_lock:
            return len(self._pending) + len(self._abandoned)

    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- calls ---------------------------------------------------------------------------------

    def exchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        waiter = _Waiter(request_id, entry)
        self._send(waiter, frame, wait_until_ns)
        if not waiter.wait((wait_until_ns - time.monotonic_ns()) / 1e9) and self._abandon(waiter):
            raise Timeout("the worker did not answer before the deadline", request_id=request_id)
        return waiter.outcome()

    async def aexchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        waiter = _Waiter(request_id, entry, asyncio.get_running_loop())
        self._send(waiter, frame, wait_until_ns)
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
                if self._exit_reason is not None:
                    raise WorkerUnavailable(f"the worker is not running ({self._exit_reason})", request_id=request_id)
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
            if self._exit_reason is not None:
                raise WorkerUnavailable(f"the worker is not running ({self._exit_reason})")
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
                self._kill("the worker's input is closed")
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
                    self._kill("the worker stopped reading its input in the middle of a frame")
                raise Timeout("the worker did not accept the call before the deadline")

    def _abandon(self, waiter: _Waiter) -> bool:
        """Moves a waiter that stops waiting to the abandoned table, so its reply goes to
        ``late_reply``. False if the reply (or the worker's death) got there first."""
        with self._state_lock:
            if self._pending.pop(waiter.request_id, None) is None:
                return False
            self._abandoned[waiter.request_id] = waiter
            return True

    # -- reader --------------------------------------------------------------------------------

    def _read_replies(self, proc: subprocess.Popen[bytes]) -> None:
        reason = "the worker exited"
        try:
            reason = self._read_until_gone(io.BufferedReader(proc.stdout, 1 << 16))  # type: ignore[arg-type]
        except Exception:
            logger.exception("molt stdio reader failed")
            reason = "the client lost the worker's output"
            self._kill(reason)
        finally:
            self._on_worker_gone(proc, reason)

    def _read_until_gone(self, stream: io.BufferedReader) -> str:
        max_frame_bytes = self.config.max_frame_bytes
        while True:
            prefix = stream.read(_LENGTH_PREFIX.size)
            if len(prefix) < _LENGTH_PREFIX.size:
                return "the worker exited" if not prefix else "the worker's output ended in the middle of a frame"
            (frame_len,) = _LENGTH_PREFIX.unpack(prefix)
            if not HEADER_LEN <= frame_len <= max_frame_bytes:
                self._kill(f"the worker sent a frame of {frame_len} bytes")
                return "the worker sent a malformed frame"
            body = stream.read(frame_len)
            if len(body) < frame_len:
                return "the worker's output ended in the middle of a frame"
            try:
                frame = decode_frame(body, max_frame_bytes)
            except ProtocolError as exc:
                if exc.request_id is None:
                    self._kill(f"the worker sent a malformed frame: {exc.safe_message}")
                    return "the worker sent a malformed frame"
                self._deliver_error(exc.request_id, exc.safe_message)
                continue
            if frame.kind is not Kind.REPLY and frame.kind is not Kind.PONG:
                self._kill(f"the worker sent a {frame.kind.name} frame")
                return "the worker sent a malformed frame"
            self._deliver(frame)

    def _deliver(self, frame: Frame) -> None:
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
            message = frame.payload[:200].decode("utf-8", "replace") if frame.status else ""
            logger.warning(
                "molt worker answered unknown request %d with %s %s", frame.request_id, frame.status.wire_name, message
            )

    def _deliver_error(self, request_id: int, reason: str) -> None:
        with self._state_lock:
            waiter = self._pending.pop(request_id, None)
            if waiter is not None:
                waiter.error = ProtocolError(f"the worker sent a reply the client does not understand: {reason}", request_id=request_id)
            self._abandoned.pop(request_id, None)
        if waiter is not None:
            waiter.wake()

    def _on_worker_gone(self, proc: subprocess.Popen[bytes], reason: str) -> None:
        # Fail every waiter first, then reap: callers must not wait for the exit status.
        with self._state_lock:
            if self._exit_reason is None:
                self._exit_reason = reason
            waiters = list(self._pending.values())
            self._pending.clear()
            self._abandoned.clear()
            for waiter in waiters:
                waiter.error = WorkerUnavailable(
                    "the worker exited before answering", request_id=waiter.request_id, reached_worker=True
                )
        for waiter in waiters:
            waiter.wake()
        try:
            returncode = proc.wait(timeout=_REAP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            returncode = proc.wait()
        self._exit_reason = f"{self._exit_reason}, {_describe_exit(returncode)}"
        level = logging.INFO if returncode == 0 else logging.WARNING
        logger.log(level, "molt worker %d is gone: %s", proc.pid, self._exit_reason)


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


def _forward_stderr(stream: IO[bytes]) -> None:
    with io.BufferedReader(stream) as lines:  # type: ignore[arg-type]
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            match = _WORKER_LOG_LINE.match(line)
            level = _WORKER_LOG_LEVELS[match.group(1)] if match else logging.WARNING
            worker_logger.log(level, "%s", line)
