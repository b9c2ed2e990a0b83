"""Transports: the ways a client can reach its worker, by the name callers select them with.

A transport is a :class:`~molt_accel._transports._base.Transport` subclass listed in
:data:`TRANSPORTS`; adding one there is all it takes for ``MoltClient(transport=...)`` and
``@molt_offload(transport=...)`` to use it. The client gets a started one from the class's
``open()``, which decides once whether the transport asked for can work here (``shm`` opens a
``stdio`` transport instead when it cannot).

Modules: ``_base`` (the contract), ``_process`` (the worker process a transport spawns),
``_stdio``, and shared memory in four: ``_shm`` (the transport: spawning or attaching, the
fallback, closing), ``_shm_connection`` (a segment connection, and what a transport's
connections share), ``_shm_thread`` (a connection per thread) and ``_shm_async`` (a
connection per event loop).
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
