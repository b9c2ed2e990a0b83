"""Whether a worker can still answer, and the worker process a transport spawns.

:class:`Liveness` records why a worker is gone (the first reason wins). A transport that
spawns its worker owns a :class:`WorkerProcess`, which is that record plus the process:
starting it, collecting its exit on a reaper thread, forwarding its stderr to logging,
ending it, and letting go of it in a forked child. Shared by every transport; nothing here
knows about frames.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, cast

from .._exceptions import WorkerUnavailable
from .._frame import Frame

__all__ = ["CLOSE_GRACE_S", "Liveness", "WorkerProcess", "log_unknown_reply"]

logger = logging.getLogger("molt_accel")
worker_logger = logging.getLogger("molt_accel.worker")

#: How long a closing transport lets in-flight calls finish before it kills the worker.
CLOSE_GRACE_S = 2.0
# How long a killed worker gets to exit before close() stops waiting for it.
_REAP_WAIT_S = 1.0
_WORKER_LOG_LINE = re.compile(r"^molt_worker (ERROR|WARN|INFO|DEBUG|TRACE): ")
_WORKER_LOG_LEVELS = {
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG,
}


class Liveness:
    """Whether a worker can still answer; once it cannot, why (safe to show: no paths).

    The first reason recorded wins and is never replaced. Its lock is a leaf: a transport may
    record a reason while holding its own locks, so that "still alive?" checks and "gone now"
    decisions made under them stay atomic.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        #: True once the worker is known to be gone; never False again after that. A plain
        #: attribute: every call reads it.
        self.gone = False

    def mark_gone(self, reason: str) -> None:
        """Records that the worker can no longer answer, unless a reason is already recorded."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
            self.gone = True

    @property
    def recorded_reason(self) -> str | None:
        """The reason recorded with :meth:`mark_gone`, if any."""
        return self._reason

    @property
    def exit_reason(self) -> str | None:
        """Why the worker is gone, or None while it is not known to be."""
        return self._reason


class WorkerProcess(Liveness):
    """A worker process this client spawned, with its stdin and stderr piped.

    A reaper thread collects its exit as soon as it happens (no zombie, even when idle) and
    logs it; a second thread forwards its stderr, line by line, to the ``molt_accel.worker``
    logger. The worker is gone once the reaper collected its exit or a reason was recorded
    (:meth:`kill`, or the owner's :meth:`mark_gone`).
    """

    def __init__(self, popen: subprocess.Popen[bytes], label: str) -> None:
        super().__init__()
        self._popen: subprocess.Popen[bytes] | None = popen
        self._pid = popen.pid
        assert popen.stdin is not None and popen.stderr is not None
        self.stdin: IO[bytes] = popen.stdin
        #: The worker's stdout when it was spawned with ``stdout=subprocess.PIPE``.
        self.stdout: IO[bytes] | None = popen.stdout
        self._stderr: IO[bytes] = popen.stderr
        self._reaper = threading.Thread(target=self._reap, name=f"molt-{label}-reaper-{popen.pid}", daemon=True)
        self._stderr_thread = threading.Thread(
            target=_forward_stderr, args=(popen.stderr,), name=f"molt-{label}-stderr-{popen.pid}", daemon=True
        )
        self._reaper.start()
        self._stderr_thread.start()

    @classmethod
    def spawn(cls, command: Sequence[str], *, stdout: int, label: str) -> WorkerProcess:
        """Starts the worker with its stdin and stderr piped (unbuffered) and ``stdout`` as
        given; ``label`` names its threads (``molt-LABEL-reaper-PID``).

        If it cannot be started, the command (a path) goes to the operator's log and the raised
        :class:`WorkerUnavailable` says only the errno name.
        """
        try:
            popen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            logger.error("could not start the molt worker %s: %s", command, exc)
            code = errno.errorcode.get(exc.errno or 0, "error")
            raise WorkerUnavailable(f"the worker could not be started ({code})") from None
        return cls(popen, label)

    @property
    def pid(self) -> int | None:
        """The worker's process id; None in a forked child (the worker is the parent's)."""
        return self._pid if self._popen is not None else None

    @property
    def exited(self) -> bool:
        """True once the worker process has exited (and been collected)."""
        return self._popen is None or self._popen.poll() is not None

    @property
    def exit_reason(self) -> str | None:
        """Why the worker is gone, with its exit status once it was collected; None while it
        is alive and no reason was recorded."""
        returncode = self._popen.returncode if self._popen is not None else None
        if returncode is None:
            return self._reason
        if returncode < 0:
            try:
                status = f"killed by {signal.Signals(-returncode).name}"
            except ValueError:
                status = f"killed by signal {-returncode}"
        else:
            status = f"exit status {returncode}"
        return f"{self._reason or 'the worker exited'}, {status}"

    def kill(self, reason: str) -> None:
        """Records ``reason`` and SIGKILLs the worker unless it already exited; the reaper
        collects it."""
        self.mark_gone(reason)
        popen = self._popen
        if popen is not None and popen.returncode is None:
            try:
                popen.kill()
            except ProcessLookupError:
                pass  # Already exited; the reaper collects it.
        logger.warning("molt worker killed: %s", reason)

    def close_stdin(self) -> None:
        """Closes the worker's stdin: EOF tells it to answer or cancel what is in flight and
        exit."""
        try:
            self.stdin.close()
        except OSError:
            pass  # Already broken: the worker is gone, which is what closing wants.

    def wait_for_exit(self, timeout_s: float = CLOSE_GRACE_S) -> None:
        """Waits up to ``timeout_s`` for the reaper to collect the worker's exit."""
        self._reaper.join(timeout=timeout_s)

    def wait_or_kill(self) -> None:
        """Waits for a worker told to exit (its stdin closed) to be collected, killing it if it
        is still running after :data:`CLOSE_GRACE_S`."""
        self._reaper.join(timeout=CLOSE_GRACE_S)
        if self._reaper.is_alive():
            self.kill("closed by the client")
            self._reaper.join(timeout=_REAP_WAIT_S)

    def release(self) -> None:
        """After the worker exited: waits (bounded) for the rest of its stderr to be logged and
        closes its remaining pipes. No reader may still be using its stdout."""
        if self._stderr_thread is not threading.current_thread():
            self._stderr_thread.join(timeout=CLOSE_GRACE_S)
        if self.stdout is not None:
            self.stdout.close()
        self._stderr.close()

    def forget(self) -> None:
        """In a forked child: closes the child's copies of the worker's pipes (a child holding
        its stdin open would keep it from seeing EOF when the parent goes away) and lets go of
        the process, which is the parent's child. The worker is not signalled."""
        self.mark_gone("the worker belongs to the parent process")
        popen, self._popen = self._popen, None
        if popen is None:
            return
        for stream in (popen.stdin, popen.stdout, popen.stderr):
            if stream is not None:
                try:
                    os.close(stream.fileno())
                except (OSError, ValueError):
                    pass  # Already closed in the parent before the fork.
        # Popen must never wait for a process that is not this one's child.
        popen.returncode = 0

    def _reap(self) -> None:
        popen = self._popen
        assert popen is not None
        returncode = popen.wait()
        self.gone = True
        level = logging.INFO if returncode == 0 else logging.WARNING
        logger.log(level, "molt worker %d is gone: %s", popen.pid, self.exit_reason)


def _forward_stderr(stream: IO[bytes]) -> None:
    """Forwards the worker's stderr, line by line, to the ``molt_accel.worker`` logger at the
    level the worker's log line names (WARNING for anything else)."""
    # The stream is unbuffered (WorkerProcess.spawn): the BufferedReader reads it in chunks
    # rather than a byte at a time.
    with io.BufferedReader(cast(io.RawIOBase, stream)) as lines:
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            match = _WORKER_LOG_LINE.match(line)
            level = _WORKER_LOG_LEVELS[match.group(1)] if match else logging.WARNING
            worker_logger.log(level, "%s", line)


def log_unknown_reply(reply: Frame) -> None:
    """Logs a reply to a request nobody waits for (a worker bug, or an id the client already
    forgot); the call it names is not affected."""
    message = reply.payload[:200].decode("utf-8", "replace") if reply.status else ""
    logger.warning("molt worker answered unknown request %d with %s %s", reply.request_id, reply.status.wire_name, message)
