"""Errors a molt call can raise.

Every failure of a call is a :class:`MoltError`; its kind tells what happened::

    MoltError(.status, .request_id, .safe_message)
    ├── WorkerUnavailable   the worker is not running and could not be (re)started, or it
    │   (.reached_worker)   died while the call was in flight (client-side; no wire status)
    ├── Busy                the worker's admission queue is full; nothing ran
    ├── Timeout             the deadline passed (in the worker, or on the client if the
    │                       worker did not answer in time)
    ├── InvalidInput        the payload could not be decoded or broke the entry's contract
    ├── NotFound            no such entry, or the exports manifest does not enable it
    ├── Cancelled           the call was cancelled before it finished
    ├── InternalError       the entry failed through no fault of the caller
    ├── ProtocolError       a frame was not understood (by either side)
    └── Unavailable         a service the entry needs (a database) is down; the worker is up

Catch :class:`MoltError`, or one kind of it. Arguments a call cannot
take (an unknown codec, a non-positive ``timeout_ms``, an empty entry name) are caller bugs
and raise ``ValueError`` instead.

``safe_message`` is always fit to show to an end user: the worker's messages are written that
way, and the client's own never contain paths, commands or stack traces.
"""

from __future__ import annotations

__all__ = [
    "MoltError",
    "WorkerUnavailable",
    "Busy",
    "Timeout",
    "InvalidInput",
    "NotFound",
    "Cancelled",
    "InternalError",
    "ProtocolError",
    "Unavailable",
    "error_for_status",
]

# Long worker messages are cut so a misbehaving entry cannot flood logs or HTTP bodies.
_MAX_MESSAGE_CHARS = 1000


class MoltError(Exception):
    """Base of every molt error.

    ``status`` is the status name (``"Busy"``, ``"WorkerUnavailable"``, ...), ``request_id``
    the id of the call it belongs to (``None`` if the call never got one), ``safe_message``
    a message safe to show to an end user.
    """

    status: str = "MoltError"

    def __init__(self, safe_message: str, *, request_id: int | None = None) -> None:
        self.safe_message = safe_message[:_MAX_MESSAGE_CHARS]
        self.request_id = request_id
        super().__init__(self.safe_message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.safe_message!r}, request_id={self.request_id})"


class WorkerUnavailable(MoltError):
    """The worker is not running, could not be started, or died during the call.

    ``reached_worker`` is False when the call was never handed to a worker, so it cannot have
    run; True when the worker may have started it before dying.
    """

    status = "WorkerUnavailable"

    def __init__(self, safe_message: str, *, request_id: int | None = None, reached_worker: bool = False) -> None:
        super().__init__(safe_message, request_id=request_id)
        self.reached_worker = reached_worker


class Busy(MoltError):
    """The worker is at capacity and ran nothing; retrying later may succeed."""

    status = "Busy"


class Timeout(MoltError):
    """The call's deadline passed before a result was ready."""

    status = "Timeout"


class InvalidInput(MoltError):
    """The payload could not be encoded or decoded, or broke the entry's contract."""

    status = "InvalidInput"


class NotFound(MoltError):
    """The entry does not exist or is not enabled by the worker's exports manifest."""

    status = "NotFound"


class Cancelled(MoltError):
    """The call was cancelled before it finished."""

    status = "Cancelled"


class InternalError(MoltError):
    """The entry failed through no fault of the caller."""

    status = "InternalError"


class ProtocolError(MoltError):
    """A frame was malformed or not understood."""

    status = "ProtocolError"


class Unavailable(MoltError):
    """A service the entry needs (its database, say) is unavailable; nothing was done, and a
    later call may succeed. The worker itself is up: this is not :class:`WorkerUnavailable`."""

    status = "Unavailable"


_BY_STATUS: dict[str, type[MoltError]] = {
    cls.status: cls
    for cls in (
        WorkerUnavailable,
        Busy,
        Timeout,
        InvalidInput,
        NotFound,
        Cancelled,
        InternalError,
        ProtocolError,
        Unavailable,
    )
}


def error_for_status(status: str, safe_message: str, *, request_id: int | None = None) -> MoltError:
    """The error a reply with this (non-Ok) status name stands for."""
    return _BY_STATUS.get(status, ProtocolError)(safe_message, request_id=request_id)
