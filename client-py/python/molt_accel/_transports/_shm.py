"""The shared-memory transport: frames through the rings of a segment the worker hands out
over a unix socket (``docs/architecture.md``, "Python client transports").

Each *connection* is one segment (a request ring, a response ring) and one socket that stays
open as the liveness channel (``_shm_connection``); connections are cheap, so they are never
shared by two readers. Threads get one connection each (``_shm_thread``), event loops one each
with a reader thread (``_shm_async``).

A spawned worker gets ``--stdio --socket DIR/worker.sock`` in a private (0700) temporary
directory. The client never writes to its stdin: the pipe is its lifetime, so a client that
is killed takes the worker with it, and ``close()`` ends it by closing the pipe. With
``socket=PATH`` the client attaches to a worker someone else runs; it cannot restart that
worker, so a "restart" is a new connection once the socket answers again.

The worker is gone when a spawned one exits or when any connection reports ``CLOSED`` (the
native side notices a hung-up socket within milliseconds, even mid-wait): every call waiting
on any connection then fails with WorkerUnavailable.

When shared memory cannot work here (no native module, not Linux, a worker that refuses
segments or sends an invalid one), :meth:`ShmTransport.open` returns a stdio transport
instead, with one warning, unless ``strict_shm`` is set: then it raises WorkerUnavailable
saying why. The choice is made once, when the transport opens.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from .._config import ClientConfig
from .._exceptions import Timeout, WorkerUnavailable
from .._frame import Frame, Kind, encode_frame
from ._base import LateReplyHandler, Transport
from ._process import CLOSE_GRACE_S, WorkerProcess
from ._shm_async import LoopCalls
from ._shm_connection import ShmConnection, ShmLink, lib
from ._shm_thread import ThreadCalls
from ._stdio import StdioTransport

__all__ = ["ShmTransport"]

logger = logging.getLogger("molt_accel")

# How long a new worker's socket is waited for between checks that the worker still runs.
_SOCKET_POLL_S = 0.002
# Pause between attempts to reach a worker's socket that does not answer yet.
_ATTACH_RETRY_S = 0.01

# The fallback reasons already warned about: each is logged once per process.
_warned: set[str] = set()


def _unsupported() -> str | None:
    """Why shared memory cannot work in this process at all, or None."""
    if not sys.platform.startswith("linux"):
        return "shared memory needs Linux (memfd)"
    if lib is None:
        return "molt_accel was installed without its native module"
    return None


class _SharedMemoryUnusable(WorkerUnavailable):
    """Raised by :meth:`ShmTransport.start` when shared memory cannot be used with this
    worker here; :meth:`ShmTransport.open` turns it into the stdio fallback, or (with
    ``strict_shm``) into the WorkerUnavailable its caller sees."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ShmTransport(Transport):
    """A worker reached through shared-memory rings; see the module docstring."""

    name = "shm"

    def __init__(self, config: ClientConfig, *, next_request_id: Callable[[], int], late_reply: LateReplyHandler) -> None:
        super().__init__(config, next_request_id=next_request_id, late_reply=late_reply)
        self._link = ShmLink(config, late_reply=late_reply)
        self._threads = ThreadCalls(self._link)
        self._loops = LoopCalls(self._link, late_reply=late_reply)
        self._socket_dir: str | None = None

    @classmethod
    def open(
        cls, config: ClientConfig, *, next_request_id: Callable[[], int], late_reply: LateReplyHandler
    ) -> Transport:
        """A started shm transport, or a started stdio transport when shared memory cannot
        be used here (one warning per reason), or WorkerUnavailable with ``strict_shm``."""
        try:
            return super().open(config, next_request_id=next_request_id, late_reply=late_reply)
        except _SharedMemoryUnusable as unusable:
            reason = unusable.reason
        if config.strict_shm:
            raise WorkerUnavailable(f"shared memory is unavailable: {reason} (strict_shm is set)") from None
        if reason not in _warned:
            _warned.add(reason)
            logger.warning("molt: %s; using the stdio transport instead", reason)
        return StdioTransport.open(config, next_request_id=next_request_id, late_reply=late_reply)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = _unsupported()
        if reason is not None:
            raise _SharedMemoryUnusable(reason)
        deadline = time.monotonic() + self.config.start_timeout_ms / 1000
        if self._link.socket_path is None:
            worker = self._spawn()
            conn = self._connect_spawned(worker, deadline)
        else:
            conn = self._connect_attached(deadline)
        self._threads.adopt(conn)
        request_id = self.next_request_id()
        ping = encode_frame(Frame(kind=Kind.PING, request_id=request_id))
        try:
            reply = self.exchange(request_id, "", ping, time.monotonic_ns() + self.config.start_timeout_ms * 1_000_000)
        except Timeout:
            self._link.gone("the worker did not answer its first ping in time")
            raise WorkerUnavailable("the worker did not answer its first ping in time") from None
        except WorkerUnavailable:
            raise WorkerUnavailable(f"the worker went away during start-up ({self.exit_reason})") from None
        if reply.kind is not Kind.PONG:
            self._link.gone("the worker answered its first ping with something else")
            raise WorkerUnavailable("the worker does not speak the molt protocol")

    def _spawn(self) -> WorkerProcess:
        self._socket_dir = tempfile.mkdtemp(prefix="molt-")  # mode 0700
        socket_path = self._link.socket_path = os.path.join(self._socket_dir, "worker.sock")
        command = self.config.worker_command(["--stdio", "--socket", socket_path])
        try:
            # stdin is the worker's lifetime: it exits on EOF, also when this process is killed.
            worker = WorkerProcess.spawn(command, stdout=subprocess.DEVNULL, label="shm")
        except WorkerUnavailable as exc:
            self._link.gone(exc.safe_message)
            raise
        self._link.worker = self._link.liveness = worker
        return worker

    def _connect_spawned(self, worker: WorkerProcess, deadline: float) -> ShmConnection:
        socket_path = self._link.socket_path
        assert socket_path is not None
        while not os.path.exists(socket_path):
            if worker.exited:
                self._started_and_died(worker)
            if time.monotonic() > deadline:
                self._link.gone("the worker did not open its socket in time")
                raise WorkerUnavailable("the worker did not answer its first ping in time")
            time.sleep(_SOCKET_POLL_S)
        # The socket file appears at bind, a moment before the worker listens: a refused
        # connection is tried again until the start timeout.
        while True:
            status, conn = self._link.connect(deadline)
            if conn is not None:
                return conn
            if worker.exited:
                self._started_and_died(worker)
            if status == lib.MOLT_SHM_HANDSHAKE_FAILED:
                raise _SharedMemoryUnusable("the worker's shared-memory segment was refused")
            if time.monotonic() > deadline:
                raise _SharedMemoryUnusable("the worker refused shared-memory connections")
            time.sleep(_ATTACH_RETRY_S)

    def _started_and_died(self, worker: WorkerProcess) -> None:
        worker.wait_for_exit()
        raise WorkerUnavailable(f"the worker exited during start-up ({self.exit_reason})")

    def _connect_attached(self, deadline: float) -> ShmConnection:
        # Absent or not answering yet (being restarted by whoever runs it): try again until
        # the start timeout. Any other failure is not about the worker's absence.
        while True:
            status, conn = self._link.connect(deadline)
            if conn is not None:
                return conn
            if status == lib.MOLT_SHM_HANDSHAKE_FAILED:
                raise _SharedMemoryUnusable("the worker's shared-memory segment was refused")
            if time.monotonic() > deadline:
                self._link.gone("no worker answers on the configured socket")
                raise WorkerUnavailable("no worker answers on the configured socket")
            time.sleep(_ATTACH_RETRY_S)

    def close(self) -> None:
        link = self._link
        link.stop(CLOSE_GRACE_S)
        threads = [*self._loops.stop(), self._threads.stop()]
        worker = link.worker
        if worker is not None:
            # EOF on stdin: the worker answers or cancels what is in flight and exits, which
            # ends every wait on its rings.
            worker.close_stdin()
            worker.wait_or_kill()
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=CLOSE_GRACE_S)
        if worker is not None:
            worker.release()
        link.close_all()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def forget_after_fork(self) -> None:
        link = self._link
        link.gone("the worker belongs to the parent process")
        link.forget()
        self._threads.forget()
        self._loops.forget()
        self._socket_dir = None  # the parent removes it
        if link.worker is not None:
            link.worker.forget()

    # -- properties ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self._link.liveness.gone

    @property
    def exit_reason(self) -> str | None:
        return self._link.liveness.exit_reason

    @property
    def in_flight(self) -> int:
        return self._link.in_flight

    @property
    def worker_pid(self) -> int | None:
        worker = self._link.worker
        return worker.pid if worker is not None else None

    # -- calls ---------------------------------------------------------------------------------

    def exchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        return self._threads.exchange(request_id, entry, frame, wait_until_ns)

    async def aexchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        return await self._loops.aexchange(request_id, entry, frame, wait_until_ns)

    def cancel(self, request_id: int) -> None:
        self._link.cancel(request_id)
