"""The interface between :class:`~molt_accel.MoltClient` and a way of reaching the worker.

A transport owns one connection to one worker process (spawned by it, or attached to): it
moves encoded frames there and back, matches replies to waiting callers by ``request_id``,
and notices when the worker is gone. Everything else (request ids, deadlines, payload codecs,
cancel policy, restarts, idempotent re-sends, hooks) belongs to the client, so a new transport
changes neither the client's callers nor the Django decorator: it is a subclass registered in
:data:`molt_accel._transports.TRANSPORTS` under the name callers pass as ``transport=``.

Contract of every method:

- ``open()`` (a class method) makes the transport for a client and starts it; it may return
  another transport than the one asked for when the one asked for cannot work here (``shm``
  falls back to ``stdio``), so that choice is made once, before any call.
- ``start()`` spawns or attaches to the worker and returns once it answered a ping, within
  ``config.start_timeout_ms``; otherwise it raises :class:`WorkerUnavailable`.
- ``exchange()`` / ``aexchange()`` send one encoded call (or ping) frame and return the reply
  frame with the same ``request_id``. They never return another call's reply and never wait
  past ``wait_until_ns`` (``time.monotonic_ns()`` clock): then they raise
  :class:`~molt_accel.Timeout`, after which the call is *abandoned*: its reply, when it comes,
  goes to ``late_reply`` instead. ``aexchange`` does not block the event loop, and when its
  task is cancelled it abandons the call the same way and re-raises ``CancelledError``.
- When the worker dies, every waiting caller fails at once with :class:`WorkerUnavailable`
  (``reached_worker=True``), ``alive`` turns False and stays False; a call made on a dead
  transport fails with ``reached_worker=False`` (it was never sent, so it may be sent again).
- ``cancel()`` asks the worker to stop a call; best effort, never raises, never blocks for
  long (it may run on the event loop).
- ``close()`` lets in-flight calls finish (bounded), then releases the worker and every
  resource; ``forget_after_fork()`` runs in a forked child and only drops what the child
  inherited, without touching the worker that belongs to the parent.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

from .._config import ClientConfig
from .._exceptions import WorkerUnavailable
from .._frame import Frame

__all__ = ["Transport", "LateReplyHandler"]

#: Receives ``(entry, reply, sent_ns)`` for the reply of an abandoned call; ``sent_ns`` is the
#: ``time.perf_counter_ns()`` at which the call was sent.
LateReplyHandler = Callable[[str, Frame, int], None]


class Transport(abc.ABC):
    """One connection to one worker. See the module docstring for the contract."""

    #: The name callers select this transport by (``transport="stdio"``).
    name: ClassVar[str]

    def __init__(self, config: ClientConfig, *, next_request_id: Callable[[], int], late_reply: LateReplyHandler) -> None:
        self.config = config
        self.next_request_id = next_request_id
        self.late_reply = late_reply

    @classmethod
    def open(
        cls, config: ClientConfig, *, next_request_id: Callable[[], int], late_reply: LateReplyHandler
    ) -> Transport:
        """A started transport for ``config``. If it cannot start, it is closed (its worker
        reaped) and the :class:`WorkerUnavailable` saying why is raised."""
        transport = cls(config, next_request_id=next_request_id, late_reply=late_reply)
        try:
            transport.start()
        except WorkerUnavailable:
            transport.close()
            raise
        return transport

    @abc.abstractmethod
    def start(self) -> None:
        """Spawns or attaches to the worker; returns once it answered a ping."""

    @abc.abstractmethod
    def exchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        """Sends ``frame`` and blocks until the reply with ``request_id`` or ``wait_until_ns``."""

    @abc.abstractmethod
    async def aexchange(self, request_id: int, entry: str, frame: bytes, wait_until_ns: int) -> Frame:
        """As :meth:`exchange`, awaiting the reply without blocking the event loop."""

    @abc.abstractmethod
    def cancel(self, request_id: int) -> None:
        """Asks the worker to stop the call ``request_id``; best effort."""

    @abc.abstractmethod
    def close(self) -> None:
        """Lets in-flight calls finish (bounded), then releases the worker and resources."""

    @abc.abstractmethod
    def forget_after_fork(self) -> None:
        """In a forked child: drops inherited resources without touching the parent's worker."""

    @property
    @abc.abstractmethod
    def alive(self) -> bool:
        """False once the worker is known to be gone; never True again after that."""

    @property
    @abc.abstractmethod
    def exit_reason(self) -> str | None:
        """Why the worker is gone (safe to show: no paths), or None while it is alive."""

    @property
    @abc.abstractmethod
    def in_flight(self) -> int:
        """Calls sent and not yet answered, abandoned ones included."""

    @property
    @abc.abstractmethod
    def worker_pid(self) -> int | None:
        """The worker's process id, if this transport knows it."""
