"""The worker process a transport spawns: starting it, ending it, describing how it ended,
letting go of it in a forked child, and forwarding its stderr. Shared by every transport that
spawns its worker; nothing here knows about frames.
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
from collections.abc import Callable, Sequence
from typing import IO, cast

from .._exceptions import WorkerUnavailable
from .._frame import Frame

__all__ = [
    "CLOSE_GRACE_S",
    "spawn_worker",
    "kill_worker",
    "await_exit",
    "exit_reason",
    "forget_worker",
    "forward_stderr",
    "log_unknown_reply",
]

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


def spawn_worker(command: Sequence[str], *, stdout: int) -> subprocess.Popen[bytes]:
    """Starts the worker with its stdin and stderr piped (unbuffered) and ``stdout`` as given.

    If it cannot be started, the command (a path) goes to the operator's log and the raised
    :class:`WorkerUnavailable` says only the errno name.
    """
    try:
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE, bufsize=0)
    except OSError as exc:
        logger.error("could not start the molt worker %s: %s", command, exc)
        code = errno.errorcode.get(exc.errno or 0, "error")
        raise WorkerUnavailable(f"the worker could not be started ({code})") from None


def kill_worker(proc: subprocess.Popen[bytes] | None, reason: str) -> None:
    """SIGKILLs the worker unless it already exited; its reaper thread collects it."""
    if proc is not None and proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass  # Already exited; the reaper collects it.
    logger.warning("molt worker killed: %s", reason)


def await_exit(reaper: threading.Thread, kill: Callable[[str], None]) -> None:
    """Waits for the reaper to collect a worker told to exit (its stdin closed), killing it
    with ``kill`` if it is still running after :data:`CLOSE_GRACE_S`."""
    reaper.join(timeout=CLOSE_GRACE_S)
    if reaper.is_alive():
        kill("closed by the client")
        reaper.join(timeout=_REAP_WAIT_S)


def exit_reason(reason: str | None, proc: subprocess.Popen[bytes] | None) -> str | None:
    """Why the worker is gone, with its exit status once reaped; None while it is alive and
    no ``reason`` was recorded. No paths."""
    returncode = proc.returncode if proc is not None else None
    if returncode is None:
        return reason
    if returncode < 0:
        try:
            status = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            status = f"killed by signal {-returncode}"
    else:
        status = f"exit status {returncode}"
    return f"{reason or 'the worker exited'}, {status}"


def forget_worker(proc: subprocess.Popen[bytes]) -> None:
    """In a forked child: closes the child's copies of the worker's pipes (a child holding its
    stdin open would keep it from seeing EOF when the parent goes away) and keeps ``Popen``
    from ever waiting for a process that is the parent's child. The worker is not signalled."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                os.close(stream.fileno())
            except (OSError, ValueError):
                pass  # Already closed in the parent before the fork.
    proc.returncode = 0


def forward_stderr(stream: IO[bytes]) -> None:
    """Forwards the worker's stderr, line by line, to the ``molt_accel.worker`` logger at the
    level the worker's log line names (WARNING for anything else)."""
    # The stream is unbuffered (spawn_worker): the BufferedReader reads it in chunks rather
    # than a byte at a time.
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
