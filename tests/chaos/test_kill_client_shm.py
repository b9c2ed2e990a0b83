"""Over shared memory one worker serves many client processes, each through its own segment.
kill -9 of one client mid-call (or SIGSTOP, then kill -9): the worker frees that connection,
its memfd mapping and its descriptors, and keeps serving the other clients throughout.

The figures (how soon the connection is freed, the other client's echo round trip before,
during and after) go to docs/reliability.md; the asserts are hang bounds only.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from molt_accel import MoltClient
from reliability_support import TEST_EXPORTS, SocketWorker, fd_count, kill_quietly, percentile, record_figures, wait_until



CLIENT_SCRIPT = Path(__file__).with_name("client_process.py")
LONG_SLEEP_MS = 30_000
HANG_BOUND_S = 5.0
ECHOES = 200


def segments(pid: int) -> int:
    return sum("/memfd:" in line for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def echo_round_trips_us(client: MoltClient) -> list[float]:
    times = []
    for i in range(ECHOES):
        started = time.perf_counter()
        assert client.call("echo", {"i": i}) == {"i": i}
        times.append((time.perf_counter() - started) * 1e6)
    return times


@pytest.mark.parametrize("stop_first", [False, True], ids=["kill", "stop-then-kill"])
def test_a_killed_client_s_segment_is_freed_and_the_others_are_served(
    socket_worker: SocketWorker, stop_first: bool
) -> None:
    worker_pid, socket_path = socket_worker.pid, socket_worker.socket
    with MoltClient(socket=str(socket_path), transport="shm", strict_shm=True) as other:
        before_us = echo_round_trips_us(other)
        segments_before, fds_before = segments(worker_pid), fd_count(worker_pid)
        victim = subprocess.Popen(
            [sys.executable, str(CLIENT_SCRIPT), "shm", "-", str(TEST_EXPORTS), str(LONG_SLEEP_MS), str(socket_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert victim.stdout is not None
            victim.stdout.readline()
            assert victim.stdout.readline().strip() == "calling"
            assert wait_until(lambda: segments(worker_pid) > segments_before, HANG_BOUND_S), "the victim has no segment"
            during_us: list[float] = []
            if stop_first:
                victim.send_signal(signal.SIGSTOP)
                during_us = echo_round_trips_us(other)
            killed_at = time.monotonic()
            victim.kill()
            victim.wait()
            freed = wait_until(
                lambda: segments(worker_pid) == segments_before and fd_count(worker_pid) == fds_before, HANG_BOUND_S
            )
            freed_after_s = time.monotonic() - killed_at
        finally:
            kill_quietly(victim.pid)
            victim.wait()
        assert freed, f"segments {segments(worker_pid)} (before {segments_before}), fds {fd_count(worker_pid)} (before {fds_before})"
        after_us = echo_round_trips_us(other)
    record_figures(
        f"chaos.kill_client[shm-{'stop-then-kill' if stop_first else 'kill'}-of-one-of-two]",
        connection_freed_after_kill_ms=round(freed_after_s * 1000, 2),
        other_client_echo_us_p50_before=round(percentile(before_us, 0.5), 1),
        other_client_echo_us_p50_while_stopped=round(percentile(during_us, 0.5), 1) if during_us else None,
        other_client_echo_us_p50_after=round(percentile(after_us, 0.5), 1),
        other_client_echo_us_p99_after=round(percentile(after_us, 0.99), 1),
    )
