"""What the reliability suites (tests/chaos, tests/security, tests/soak) share: where the worker
is, what /proc says about a process, and where measured figures go.

Figures are not assertions: a test asserts only generous bounds that detect hangs and leaks,
and hands what it measured to :func:`record_figures`, which prints one line and, when
``$MOLT_RELIABILITY_FIGURES`` names a file, appends one JSON object to it (``make chaos``
collects them there for docs/reliability.md).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER_BIN = Path(os.environ.get("MOLT_WORKER_BIN") or REPO / "target" / "debug" / "molt_worker_test")
TEST_EXPORTS = REPO / "molt_exports.test.json"
FIGURES_ENV = "MOLT_RELIABILITY_FIGURES"

# prctl(2) option: orphaned descendants are re-parented to this process instead of init, so a
# test can reap (and see the exit status of) a worker whose client it killed.
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class SocketWorker:
    """A worker serving shared-memory clients on its control socket (``--socket``): what the
    ``socket_worker`` fixture (tests/conftest.py) gives a test."""

    pid: int
    socket: Path


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def record_figures(test: str, **figures: object) -> None:
    """Reports what ``test`` measured: one line on stdout, one JSON line in the figures file."""
    print(f"\n[figures] {test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}) + "\n")


def wait_until(condition: Callable[[], object], bound_s: float, poll_s: float = 0.002) -> bool:
    """Polls ``condition`` until it holds (True) or ``bound_s`` passes (False)."""
    give_up = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(poll_s)
    return True


# -- /proc ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_state(pid: int) -> str | None:
    """The one-letter state (R, S, Z, T, ...) of ``pid``, None once it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def children(pid: int) -> list[int]:
    """Every process whose parent is ``pid``, zombies included."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), zombies included."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        below = [child for parent in frontier for child in children(parent)]
        found += below
        frontier = below
    return found


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): with the pid, names one process even
    after its number is reused. None once it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def zombie_children(pid: int) -> list[int]:
    return [child for child in children(pid) if process_state(child) == "Z"]


def command_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def status_value(pid: int, key: str) -> int:
    """A numeric line of /proc/<pid>/status (``VmRSS`` in kB, ``Threads``, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` has open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # Closed between listing and reading.
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def inet_sockets(pid: int) -> list[tuple[str, str, str]]:
    """``(table, local address, state)`` of every TCP/UDP socket (v4 and v6) that ``pid`` has
    open, read from the tables of its own network namespace."""
    owned = socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[9]) in owned:
                found.append((table, fields[1], fields[3]))
    return found


def dev_shm_names() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def become_subreaper() -> None:
    """Makes this process adopt its orphaned descendants (see _PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap(pid: int, bound_s: float) -> int | None:
    """Waits up to ``bound_s`` for child ``pid`` to exit and reaps it; its exit status as
    ``subprocess`` reports it (negative for a signal), or None if it is still running."""
    give_up = time.monotonic() + bound_s
    while True:
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if reaped == pid:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > give_up:
            return None
        time.sleep(0.005)


def kill_quietly(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
