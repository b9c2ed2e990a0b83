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
from collections.abc import Iterator
from pathlib import Path

import pytest

from molt_accel import MoltClient
from molt_accel._transports import TRANSPORTS as CLIENT_TRANSPORTS
from reliability_support import TEST_EXPORTS, fd_count, kill_quietly, percentile, record_figures, wait_until



def _shm_unavailable() -> str | None:
    if "shm" not in CLIENT_TRANSPORTS:
        return "molt_accel has no shm transport yet"
    try:
        import molt_accel._native  # noqa: F401
    except ImportError:
        return "molt_accel was built without its native module"
    return None


pytestmark = pytest.mark.skipif(_shm_unavailable() is not None, reason=str(_shm_unavailable()))

CLIENT_SCRIPT = Path(__file__).with_name("client_process.py")
LONG_SLEEP_MS = 30_000
HANG_BOUND_S = 5.0
ECHOES = 200


@pytest.fixture
def socket_worker(worker_bin: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    socket_path = tmp_path / "run" / "worker.sock"
    proc = subprocess.Popen(
        [worker_bin, "--socket", str(socket_path), "--exports", str(TEST_EXPORTS)], stderr=subprocess.DEVNULL
    )
    try:
        assert wait_until(socket_path.exists, HANG_BOUND_S), "the worker never opened its socket"
        yield proc.pid, socket_path
    finally:
        proc.terminate()
        proc.wait(HANG_BOUND_S)


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
    socket_worker: tuple[int, Path], stop_first: bool
) -> None:
    worker_pid, socket_path = socket_worker
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
