"""kill -9 and SIGSTOP of a client process in the middle of a call.

Over stdio every client has its own worker, so "the worker frees the connection" means: a
worker whose client was killed sees EOF on stdin, cancels the call in flight and exits 0
promptly; a worker whose client is merely stopped keeps running (it does not mistake a
stopped peer for a dead one) and still exits cleanly once that client is killed.

The client runs in a subprocess (tests/chaos/client_process.py). This test process becomes a
child subreaper, so the orphaned worker is re-parented here and its exit status can be read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability_support import TEST_EXPORTS, become_subreaper, kill_quietly, process_state, reap, record_figures

CLIENT_SCRIPT = Path(__file__).with_name("client_process.py")
# A call that is still in flight when the client is killed.
LONG_SLEEP_MS = 30_000
# Only a hang exceeds it.
EXIT_HANG_BOUND_S = 5.0


@pytest.fixture
def client_process(worker_bin: str, transport: str):
    become_subreaper()
    proc = subprocess.Popen(
        [sys.executable, str(CLIENT_SCRIPT), transport, worker_bin, str(TEST_EXPORTS), str(LONG_SLEEP_MS)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUST_LOG": "error"},
    )
    assert proc.stdout is not None
    worker_pid = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "calling"
    try:
        yield proc, worker_pid
    finally:
        kill_quietly(proc.pid)
        proc.wait()
        kill_quietly(worker_pid)
        reap(worker_pid, EXIT_HANG_BOUND_S)


@pytest.mark.parametrize("stop_first", [False, True], ids=["kill", "stop-then-kill"])
def test_a_worker_whose_client_dies_mid_call_exits_cleanly(client_process, transport: str, stop_first: bool) -> None:
    proc, worker_pid = client_process
    # The call is sent once the client says "calling"; give the worker time to start it.
    time.sleep(0.05)
    if stop_first:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        assert process_state(worker_pid) not in (None, "Z"), "the worker gave up on a stopped client"
    killed_at = time.monotonic()
    proc.kill()
    proc.wait()
    status = reap(worker_pid, EXIT_HANG_BOUND_S)
    exited_after_s = time.monotonic() - killed_at
    assert status == 0, f"worker exit status {status} (None: still running after {EXIT_HANG_BOUND_S} s)"
    record_figures(
        f"chaos.kill_client[{transport}-{'stop-then-kill' if stop_first else 'kill'}]",
        worker_exit_after_client_kill_ms=round(exited_after_s * 1000, 2),
        worker_exit_status=status,
    )
