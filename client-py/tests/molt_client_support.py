"""Helpers shared by the client test modules (a unique module name, so that test suites of
other directories collected in the same pytest run cannot shadow it)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from molt_accel import MoltClient

REPO = Path(__file__).resolve().parents[2]
WORKER_BIN = Path(os.environ.get("MOLT_WORKER_BIN") or REPO / "target" / "debug" / "molt_worker_test")
TEST_EXPORTS = REPO / "molt_exports.test.json"
# Bounds that only detect hangs; none of them is a performance assertion.
HANG_BOUND_S = 10.0

MakeClient = Callable[..., MoltClient]


def worker_cmd(*extra: str) -> list[str]:
    if not WORKER_BIN.is_file():
        pytest.fail(f"molt_worker not built at {WORKER_BIN}: run `make build` or set MOLT_WORKER_BIN")
    return [str(WORKER_BIN), *extra]


def wait_until(condition: Callable[[], object], what: str, bound_s: float = HANG_BOUND_S) -> None:
    """Polls ``condition`` until true; fails the test if it is still false after ``bound_s``."""
    give_up = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.002)


def in_forked_child(check: Callable[[], bool]) -> bool:
    """Runs ``check`` in a forked child and returns its result; a check that raises is False.
    The child exits without running the parent's cleanup (atexit, pytest's fixtures)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        ok = False
        try:
            ok = check()
        finally:
            os.write(write_end, b"ok" if ok else b"no")
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        result = answer.read()
    os.waitpid(child, 0)
    return result == b"ok"


def stop_process(pid: int) -> None:
    """SIGSTOPs ``pid`` and returns once every one of its threads is stopped: the signal is
    delivered asynchronously, and over shared memory a running worker answers a call within
    microseconds, before it would otherwise have stopped."""
    os.kill(pid, signal.SIGSTOP)

    def all_stopped() -> bool:
        states = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/stat") as stat:
                    states.append(stat.read().rpartition(")")[2].split()[0])
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
        return all(state in ("T", "t") for state in states)

    wait_until(all_stopped, "the worker is stopped")
