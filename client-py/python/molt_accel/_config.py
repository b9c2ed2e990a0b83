"""The one settings object of a client: :class:`ClientConfig`.

``MoltClient(**options)`` builds one from its keyword arguments; the Django integration builds
one from ``settings.MOLT_ACCEL`` with :meth:`ClientConfig.from_settings`. Values are checked
once, here, so the rest of the package can trust them.

>>> ClientConfig(worker_cmd=("molt_worker",), exports="molt_exports.json").worker_command(["--stdio"])
['molt_worker', '--stdio', '--exports', 'molt_exports.json']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ._frame import DEFAULT_MAX_FRAME_BYTES, HEADER_LEN

__all__ = ["ClientConfig", "DEFAULT_WORKER_BIN_ENV"]

#: Environment variable naming the worker binary when no ``worker_cmd`` is given.
DEFAULT_WORKER_BIN_ENV = "MOLT_WORKER_BIN"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How a :class:`~molt_accel.MoltClient` reaches its worker and how it behaves.

    - ``worker_cmd``: the worker's program and its own arguments. The transport adds its flag
      (``--stdio``) unless present; ``exports`` adds ``--exports PATH``. ``None`` means the
      binary named by ``$MOLT_WORKER_BIN``, else ``molt_worker`` on ``PATH``.
    - ``socket``: attach to a running worker's control socket instead of spawning one
      (shared-memory transport only).
    - ``transport``: ``"stdio"`` (pipes to a worker the client spawns) or another registered
      transport name.
    - ``exports``: the exports manifest passed to a spawned worker.
    - ``max_restarts`` within ``restart_window_s``: how often a dead worker is restarted
      before the client stays unavailable (until the window has passed).
    - ``timeout_ms``: the default deadline of a call.
    - ``deadline_grace_ms``: how long past a deadline the client still waits for the worker's
      own Timeout reply before giving up on its side.
    - ``start_timeout_ms``: how long a new worker gets to answer its first ping.
    - ``max_frame_bytes``: the largest reply frame accepted.
    - ``strict_shm``: with the shared-memory transport, fail instead of falling back to stdio.
    - ``metrics``: keep HDR histograms of round-trip, encode and decode time per entry (the
      ``hdrhistogram`` package; see docs/operations.md); implied by ``metrics_dir``.
    - ``metrics_dir``: append them as HdrHistogram interval logs to a file in this directory,
      every ``metrics_interval_s`` seconds and when the client closes.
    """

    worker_cmd: tuple[str, ...] | None = None
    socket: str | None = None
    transport: str = "stdio"
    exports: str | None = None
    max_restarts: int = 1
    restart_window_s: float = 60.0
    timeout_ms: int = 1000
    deadline_grace_ms: int = 50
    start_timeout_ms: int = 5000
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    strict_shm: bool = False
    metrics: bool = False
    metrics_dir: str | None = None
    metrics_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.worker_cmd is not None:
            if isinstance(self.worker_cmd, (str, bytes)) or not all(isinstance(a, str) for a in self.worker_cmd):
                raise ValueError("worker_cmd is a sequence of strings (program, then arguments)")
            if not self.worker_cmd:
                raise ValueError("worker_cmd is empty")
            object.__setattr__(self, "worker_cmd", tuple(self.worker_cmd))
        if self.exports is not None and self.worker_cmd is not None and "--exports" in self.worker_cmd:
            raise ValueError("the exports manifest is given twice (exports= and --exports in worker_cmd)")
        if self.socket is not None and self.transport == "stdio":
            raise ValueError("socket= attaches over shared memory; it needs transport='shm'")
        for name in ("max_restarts", "timeout_ms", "deadline_grace_ms", "start_timeout_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if self.timeout_ms == 0:
            raise ValueError("timeout_ms must be positive")
        if not self.restart_window_s > 0:
            raise ValueError("restart_window_s must be positive")
        if self.metrics_dir is not None:
            object.__setattr__(self, "metrics_dir", os.fspath(self.metrics_dir))
        if not self.metrics_interval_s > 0:
            raise ValueError("metrics_interval_s must be positive")
        if not HEADER_LEN <= self.max_frame_bytes <= 0xFFFF_FFFF:
            raise ValueError(f"max_frame_bytes must be between {HEADER_LEN} and {0xFFFF_FFFF}")

    def worker_command(self, transport_args: Sequence[str]) -> list[str]:
        """The command that spawns a worker speaking a transport whose flags are
        ``transport_args`` (each added only if ``worker_cmd`` lacks it)."""
        if self.worker_cmd is not None:
            command = list(self.worker_cmd)
        else:
            command = [os.environ.get(DEFAULT_WORKER_BIN_ENV) or "molt_worker"]
        command += [arg for arg in transport_args if arg not in command]
        if self.exports is not None:
            command += ["--exports", os.fspath(self.exports)]
        return command

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ClientConfig:
        """A config from a settings mapping with upper-case keys (``WORKER_CMD``,
        ``TIMEOUT_MS``, ...); keys that are not config fields are the caller's to handle."""
        names = {f.name for f in fields(cls)}
        return cls(**{key.lower(): value for key, value in settings.items() if key.lower() in names})
