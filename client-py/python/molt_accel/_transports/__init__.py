"""Transports: the ways a client can reach its worker, by the name callers select them with.

A transport is a :class:`~molt_accel._transports._base.Transport` subclass listed in
:data:`TRANSPORTS`; adding one there is all it takes for ``MoltClient(transport=...)`` and
``@molt_offload(transport=...)`` to use it.
"""

from __future__ import annotations

from ._base import LateReplyHandler, Transport
from ._shm import ShmTransport
from ._stdio import StdioTransport

__all__ = ["TRANSPORTS", "Transport", "LateReplyHandler", "transport_class"]

TRANSPORTS: dict[str, type[Transport]] = {StdioTransport.name: StdioTransport, ShmTransport.name: ShmTransport}


def transport_class(name: str) -> type[Transport]:
    """The transport registered as ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise ValueError(f"unknown transport {name!r}; available: {', '.join(sorted(TRANSPORTS))}") from None
