"""A worker that stops reading (SIGSTOP): callers time out at their deadline, never later.

Two shapes: small calls, whose frames fit in the pipe and whose replies never come; and
calls larger than the pipe, whose writes block half way (the client then has to kill the
worker, since a frame cut in two would corrupt the stream). Either way every caller gets
Timeout (or WorkerUnavailable, for the calls of a worker the client killed) no later than its
deadline plus the client's grace, and the client works again once the worker is resumed or
replaced.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from molt_accel import MoltClient, MoltError, Timeout, WorkerUnavailable
from reliability_support import TEST_EXPORTS, kill_quietly, percentile, record_figures

CALLERS = 8
TIMEOUT_MS = 200
GRACE_MS = 50
# Scheduling slack on a loaded 2-core machine: only a caller that waits past its deadline for
# some other reason than being descheduled exceeds it.
LATE_BOUND_S = 1.0


@pytest.mark.parametrize("payload_bytes", [64, 256 * 1024], ids=["fits-the-pipe", "fills-the-pipe"])
def test_callers_of_a_stopped_worker_time_out_at_their_deadline(transport: str, worker_bin: str, payload_bytes: int) -> None:
    client = MoltClient(
        worker_cmd=[worker_bin],
        exports=TEST_EXPORTS,
        transport=transport,
        strict_shm=transport == "shm",
        deadline_grace_ms=GRACE_MS,
        max_restarts=5,
    )
    try:
        client.start()
        pid = client.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        outcomes: list[tuple[str, float]] = []

        def call() -> None:
            started = time.monotonic()
            try:
                client.call("echo", b"x" * payload_bytes, codec="raw", timeout_ms=TIMEOUT_MS)
                outcome = "ok"
            except (Timeout, WorkerUnavailable) as exc:
                outcome = type(exc).__name__
            except MoltError as exc:
                outcome = f"unexpected {exc!r}"
            outcomes.append((outcome, time.monotonic() - started))

        callers = [threading.Thread(target=call) for _ in range(CALLERS)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(TIMEOUT_MS / 1000 + LATE_BOUND_S + 5.0)
        assert not any(caller.is_alive() for caller in callers), "a caller hung on a stopped worker"
        kill_quietly(pid, signal.SIGCONT)

        kinds = {outcome for outcome, _ in outcomes}
        assert kinds <= {"Timeout", "WorkerUnavailable"}, outcomes
        assert "Timeout" in kinds
        deadline_s = (TIMEOUT_MS + GRACE_MS) / 1000
        lateness = [elapsed - deadline_s for _, elapsed in outcomes]
        assert max(lateness) < LATE_BOUND_S, outcomes
        # Resumed (or replaced, if the client had to kill it), the worker answers again.
        assert client.call("echo", {"again": 1}, timeout_ms=5000) == {"again": 1}
    finally:
        client.close()
    record_figures(
        f"chaos.stopped_worker[{transport}-{payload_bytes}B]",
        callers=CALLERS,
        timeout_ms=TIMEOUT_MS,
        grace_ms=GRACE_MS,
        outcomes={kind: sum(1 for o, _ in outcomes if o == kind) for kind in kinds},
        past_deadline_plus_grace_ms_p50=round(percentile(lateness, 0.5) * 1000, 2),
        past_deadline_plus_grace_ms_max=round(max(lateness) * 1000, 2),
    )
