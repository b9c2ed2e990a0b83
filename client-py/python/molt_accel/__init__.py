"""molt_accel: offload hot Django endpoints to the ``molt_worker`` native process.

>>> from molt_accel import MoltClient
>>> client = MoltClient(worker_cmd=["molt_worker"], exports="molt_exports.json")  # doctest: +SKIP
>>> client.call("echo", {"x": 1}, timeout_ms=250)  # doctest: +SKIP
{'x': 1}

The Django decorator is :func:`molt_accel.django.molt_offload`.
"""

from ._client import MoltClient
from ._config import ClientConfig
from ._exceptions import (
    Busy,
    Cancelled,
    InternalError,
    InvalidInput,
    MoltError,
    NotFound,
    ProtocolError,
    Timeout,
    Unavailable,
    WorkerUnavailable,
)
from ._hooks import CallMetrics, Hooks, JsonlMetrics

__version__ = "0.1.0"

__all__ = [
    "MoltClient",
    "ClientConfig",
    "Hooks",
    "CallMetrics",
    "JsonlMetrics",
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
]
