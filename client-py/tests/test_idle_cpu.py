"""Waiting costs nothing once nothing is due: an idle shm client and its worker sleep.

Spinning is bounded (a spin window, then a futex sleep), so a second after the last call
neither side may be burning a core. Measured from ``/proc/<pid>/stat`` (utime + stime of every
thread) over one second; the bound, 5 % of one core, is generous: a spinner would show
100 %, a thread polling every millisecond a few percent, and a sleeping process 0.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from molt_accel import MoltClient
from molt_accel._transports import _shm
from molt_client_support import TEST_EXPORTS, worker_cmd

pytestmark = pytest.mark.skipif(_shm._unsupported() is not None, reason=str(_shm._unsupported()))

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
IDLE_S = 1.0
# Longer than any spin window (at most 10 ms), so every wait has gone to sleep.
SETTLE_S = 0.2
MAX_IDLE_SHARE = 0.05


def cpu_s(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as stat_file:
        fields = stat_file.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


@pytest.fixture
def client() -> Iterator[MoltClient]:
    with MoltClient(worker_cmd=worker_cmd(), exports=str(TEST_EXPORTS), transport="shm", strict_shm=True) as made:
        yield made


async def idle_shares(client: MoltClient) -> tuple[float, float]:
    """(client process, worker) CPU over IDLE_S of idling on the event loop, as shares of one
    core, with a thread connection and this loop's connection both open."""
    assert client.call("echo", {"x": 1}) == {"x": 1}
    assert await client.acall("echo", {"x": 2}) == {"x": 2}
    await asyncio.sleep(SETTLE_S)
    worker_pid = client.worker_pid
    assert worker_pid is not None
    before = (cpu_s(os.getpid()), cpu_s(worker_pid))
    started = time.monotonic()
    await asyncio.sleep(IDLE_S)
    elapsed = time.monotonic() - started
    after = (cpu_s(os.getpid()), cpu_s(worker_pid))
    return (after[0] - before[0]) / elapsed, (after[1] - before[1]) / elapsed


def test_an_idle_worker_and_client_use_no_cpu(client: MoltClient) -> None:
    client_share, worker_share = asyncio.run(idle_shares(client))
    assert worker_share < MAX_IDLE_SHARE, f"the idle worker used {worker_share:.0%} of a core"
    assert client_share < MAX_IDLE_SHARE, f"the idle client used {client_share:.0%} of a core"
