"""Observation hooks: what a client reports about every call.

A :class:`Hooks` holds up to three callables; a client runs every ``Hooks`` it was given:

- ``before_send(entry, payload_size)`` before a call is sent (again before a re-send),
- ``after_recv(entry, status, metrics)`` for every reply the worker sends, including the late
  reply to a call the client already gave up on (cancelled, or past its deadline),
- ``on_error(entry, error)`` for every :class:`~molt_accel.MoltError` a call raises.

Hooks run on the thread that got the reply (a caller's thread, the event loop, or the
transport's reading thread for late replies), so they should be quick and must not make calls
on the same client. A hook that raises never breaks the call: the exception is logged once per
hook and otherwise ignored.

>>> seen = []
>>> hooks = Hooks(after_recv=lambda entry, status, metrics: seen.append((entry, status)))
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._exceptions import MoltError

__all__ = ["CallMetrics", "Hooks", "JsonlMetrics"]

logger = logging.getLogger("molt_accel")


@dataclass(frozen=True, slots=True)
class CallMetrics:
    """Timings of one call: the worker's (from the reply) and the client's own."""

    #: Microseconds from the call's arrival in the worker to the start of its execution.
    queue_us: int
    #: Microseconds the worker spent executing the call.
    exec_us: int
    #: The worker's admission queue depth when the call arrived.
    queue_depth: int
    #: Microseconds the client spent encoding the payload and frame.
    encode_us: int
    #: Microseconds the client spent decoding the reply payload.
    decode_us: int
    #: Microseconds from sending the call to receiving its reply, as the caller saw it.
    round_trip_us: int


_METRIC_FIELDS = tuple(field.name for field in fields(CallMetrics))


@dataclass(frozen=True, slots=True)
class Hooks:
    """Callables a client runs around every call; any of them may be ``None``."""

    before_send: Callable[[str, int], object] | None = None
    after_recv: Callable[[str, str, CallMetrics], object] | None = None
    on_error: Callable[[str, MoltError], object] | None = None


class HookRunner:
    """Runs a client's hooks, keeping a raising hook from breaking the call."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self._before_send = [h.before_send for h in hooks if h.before_send is not None]
        self._after_recv = [h.after_recv for h in hooks if h.after_recv is not None]
        self._on_error = [h.on_error for h in hooks if h.on_error is not None]
        self._reported: set[tuple[str, int]] = set()
        self._reported_lock = threading.Lock()

    @property
    def wants_metrics(self) -> bool:
        """Whether any ``after_recv`` hook is set (metrics are built only then)."""
        return bool(self._after_recv)

    def before_send(self, entry: str, payload_size: int) -> None:
        for hook in self._before_send:
            self._run("before_send", hook, entry, payload_size)

    def after_recv(self, entry: str, status: str, metrics: CallMetrics) -> None:
        for hook in self._after_recv:
            self._run("after_recv", hook, entry, status, metrics)

    def on_error(self, entry: str, error: MoltError) -> None:
        for hook in self._on_error:
            self._run("on_error", hook, entry, error)

    def forget_after_fork(self) -> None:
        """In a forked child: a parent thread may have held the lock at the fork."""
        self._reported_lock = threading.Lock()

    def _run(self, slot: str, hook: Callable[..., object], *args: object) -> None:
        try:
            hook(*args)
        except Exception:
            key = (slot, id(hook))
            with self._reported_lock:
                first = key not in self._reported
                self._reported.add(key)
            if first:
                logger.exception("molt_accel %s hook %r raised; ignoring it (reported once)", slot, hook)


class JsonlMetrics:
    """An ``after_recv`` hook appending one JSON line per reply to a file.

    Each line has ``entry``, ``status`` and every :class:`CallMetrics` field. Lines are
    appended with one ``write`` on a file opened ``O_APPEND``, so threads and processes
    (gunicorn workers) sharing the file never interleave within a line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def __call__(self, entry: str, status: str, metrics: CallMetrics) -> None:
        # The fields by name, not dataclasses.asdict: asdict deep-copies recursively and cost
        # 9 of this hook's 15 µs per reply, on every offloaded request of the benchmark.
        values = {name: getattr(metrics, name) for name in _METRIC_FIELDS}
        line = json.dumps({"entry": entry, "status": status, **values}, separators=(",", ":"))
        os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        """Closes the file; later lines raise (and are logged once by the hook runner)."""
        os.close(self._fd)
