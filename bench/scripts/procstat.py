"""CPU time and resident memory of process groups, read from /proc while a load step runs.

A `ProcessSampler` thread wakes every `interval_s`, finds the processes of each role (a role
is a callable returning pids, so processes that appear mid-run are picked up), and records
per-pid cumulative CPU ticks and the summed VmRSS (and RssShmem) of the role. At `stop()` it
reports, per role, the CPU used during the window as a percentage of one core (200 % = both
cores of a 2-core machine busy), the summed resident set at the window's start and at its
peak, and the peak of its shared-memory part; and the whole machine's busy CPU over the same
window, so a step disturbed by unrelated work can be told apart.

Linux only: it reads `/proc/<pid>/stat`, `/proc/<pid>/status` and `/proc/<pid>/task/*/children`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def read_cpu_ticks(pid: int) -> int | None:
    """utime + stime of `pid` in clock ticks, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    # Fields after the name start at field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def read_rss_and_shmem_kib(pid: int) -> tuple[int, int]:
    """VmRSS of `pid` and the shared-memory part of it (RssShmem: the pages of the rings'
    memfds it maps, counted in each process that touched them), in KiB; zeros once the
    process is gone."""
    rss_kib = shmem_kib = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as status_file:
            for line in status_file:
                if line.startswith(b"VmRSS:"):
                    rss_kib = int(line.split()[1])
                elif line.startswith(b"RssShmem:"):
                    shmem_kib = int(line.split()[1])
                    break
    except OSError:
        return 0, 0
    return rss_kib, shmem_kib


def read_machine_busy_ticks() -> int:
    """CPU ticks every core spent on anything but idle and iowait since boot (/proc/stat)."""
    with open("/proc/stat", "rb") as stat_file:
        fields = [int(value) for value in stat_file.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle


def process_name(pid: int) -> str:
    """The kernel's short name of `pid` (`comm`), or "" once it is gone."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm_file:
            return comm_file.read().strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from every thread's children list."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children_file:
                found.extend(int(child) for child in children_file.read().split())
        except OSError:
            continue
    return found


def descendants(roots: Iterable[int]) -> list[int]:
    """`roots` and every process below them."""
    seen: list[int] = []
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.append(pid)
        pending.extend(children(pid))
    return seen


@dataclass(frozen=True)
class RoleUsage:
    """What one role used during a sampling window."""

    cpu_pct: float
    """CPU time during the window as a percentage of one core."""
    rss_mb: float
    """Peak of the role's summed VmRSS over the samples, in MiB."""
    rss_start_mb: float
    """The role's summed VmRSS at the window's first sample, in MiB: `rss_mb` less this is
    what the window added (the memory its requests needed beyond what was there before)."""
    shm_mb: float
    """Peak of the role's summed RssShmem (part of VmRSS), in MiB: shared pages such as the
    rings, which count in every process that maps them."""
    processes: int
    """How many distinct processes the role had during the window."""


class ProcessSampler:
    """Samples CPU ticks and RSS of named process roles on a background thread."""

    def __init__(self, roles: dict[str, Callable[[], list[int]]], interval_s: float = 0.2) -> None:
        self._roles = roles
        self._interval_s = interval_s
        self._first_ticks: dict[str, dict[int, int]] = {role: {} for role in roles}
        self._last_ticks: dict[str, dict[int, int]] = {role: {} for role in roles}
        self._peak_rss_kib: dict[str, int] = {role: 0 for role in roles}
        self._start_rss_kib: dict[str, int] = {role: 0 for role in roles}
        self._peak_shm_kib: dict[str, int] = {role: 0 for role in roles}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)
        self._started_at = 0.0
        self._stopped_at = 0.0
        self._machine_busy_at_start = 0
        self._machine_busy_ticks = 0
        self.machine_cpu_pct = 0.0
        """After `stop()`: every process's CPU over the window, as a percentage of one core."""

    def start(self) -> None:
        """Takes the first sample now and keeps sampling until `stop()`."""
        self._machine_busy_at_start = read_machine_busy_ticks()
        self._started_at = time.monotonic()
        self._sample(first=True)
        self._thread.start()

    def stop(self) -> dict[str, RoleUsage]:
        """Takes a last sample and returns each role's usage over the window."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self._stopped_at = time.monotonic()
        self._machine_busy_ticks = read_machine_busy_ticks() - self._machine_busy_at_start
        elapsed_s = max(self._stopped_at - self._started_at, 1e-9)
        usage: dict[str, RoleUsage] = {}
        for role in self._roles:
            used_ticks = sum(
                self._last_ticks[role][pid] - self._first_ticks[role][pid] for pid in self._last_ticks[role]
            )
            usage[role] = RoleUsage(
                cpu_pct=100.0 * used_ticks / CLOCK_TICKS_PER_S / elapsed_s,
                rss_mb=self._peak_rss_kib[role] / 1024.0,
                rss_start_mb=self._start_rss_kib[role] / 1024.0,
                shm_mb=self._peak_shm_kib[role] / 1024.0,
                processes=len(self._last_ticks[role]),
            )
        self.machine_cpu_pct = 100.0 * self._machine_busy_ticks / CLOCK_TICKS_PER_S / elapsed_s
        return usage

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        for role, find_pids in self._roles.items():
            rss_kib = shm_kib = 0
            for pid in find_pids():
                ticks = read_cpu_ticks(pid)
                if ticks is None:
                    continue
                # A process first seen after the opening sample was born inside the window: all
                # of its CPU time belongs to it.
                self._first_ticks[role].setdefault(pid, ticks if first else 0)
                self._last_ticks[role][pid] = ticks
                process_rss_kib, process_shm_kib = read_rss_and_shmem_kib(pid)
                rss_kib += process_rss_kib
                shm_kib += process_shm_kib
            if first:
                self._start_rss_kib[role] = rss_kib
            self._peak_rss_kib[role] = max(self._peak_rss_kib[role], rss_kib)
            self._peak_shm_kib[role] = max(self._peak_shm_kib[role], shm_kib)
