"""kill -9 of the worker at random points while threads share one MoltClient.

Every call in flight when the worker dies must end promptly with WorkerUnavailable (or with its
own result, if the reply was already out), no call may hang or get another call's reply, the
client must bring a new worker up for the next call, and nothing may be left behind: no zombie,
no new file in /dev/shm, no control socket (or its directory) of a killed worker, no
descriptor of the client leaked.

Cycles: 50 here (`make test`), MOLT_CHAOS_CYCLES=1000 in `make chaos`. The measured figures
(how long after the kill the in-flight calls learnt of it) go to docs/reliability.md; the
test itself only asserts a bound that a hang would exceed.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from molt_accel import MoltClient, MoltError, WorkerUnavailable
from reliability_support import (
    TEST_EXPORTS,
    children,
    command_name,
    dev_shm_names,
    fd_count,
    kill_quietly,
    percentile,
    process_state,
    record_figures,
    wait_until,
    zombie_children,
)

CALLER_THREADS = 4
CALL_TIMEOUT_MS = 5000
# Only a hang exceeds these; the figures are what the test measured.
UNAVAILABLE_HANG_BOUND_S = 2.0
CALL_HANG_BOUND_S = CALL_TIMEOUT_MS / 1000 + 2.0
WORKER_BACK_BOUND_S = 5.0
# Longest pause between two kills: kills land during start-up, while idle and mid-call.
MAX_PAUSE_S = 0.02


@dataclass(frozen=True)
class Call:
    started: float
    ended: float
    outcome: str


def live_workers(worker_bin: str) -> list[int]:
    # The kernel keeps the first 15 bytes of a command's name.
    name = Path(worker_bin).name[:15]
    return [
        pid
        for pid in children(os.getpid())
        if command_name(pid) == name and process_state(pid) not in (None, "Z")
    ]


def socket_paths(pid: int) -> list[Path]:
    """The control socket a worker was started with (``--socket PATH``), if any."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [Path(os.fsdecode(args[i + 1])) for i, arg in enumerate(args[:-1]) if arg == b"--socket"]


def call_forever(client: MoltClient, seed: int, stop: threading.Event, calls: list[Call]) -> None:
    """Issues echo calls (carrying a token that must come back) and short sleeps until stopped."""
    rng = random.Random(seed)
    while not stop.is_set():
        started = time.monotonic()
        try:
            if rng.random() < 0.7:
                payload = {"token": uuid.uuid4().hex, "pad": "x" * rng.randint(0, 4000)}
                correct = client.call("echo", payload, timeout_ms=CALL_TIMEOUT_MS) == payload
            else:
                ms = rng.randint(1, 30)
                correct = client.call("sleep", {"ms": ms}, timeout_ms=CALL_TIMEOUT_MS) == {"slept_ms": ms}
            outcome = "ok" if correct else "wrong reply"
        except WorkerUnavailable:
            outcome = "unavailable"
        except MoltError as exc:
            outcome = type(exc).__name__
        calls.append(Call(started, time.monotonic(), outcome))


def test_kill_9_under_load_fails_in_flight_calls_promptly_and_leaves_nothing_behind(
    transport: str, worker_bin: str, chaos_cycles: int
) -> None:
    shm_before = dev_shm_names()
    rng = random.Random(7)
    client = MoltClient(
        worker_cmd=[worker_bin],
        exports=TEST_EXPORTS,
        transport=transport,
        strict_shm=transport == "shm",
        max_restarts=10 * chaos_cycles + 10,
        restart_window_s=3600.0,
        timeout_ms=CALL_TIMEOUT_MS,
    )
    try:
        client.start()
        assert client.call("echo", {"warm": 1}) == {"warm": 1}
        fds_before = fd_count()
        stop = threading.Event()
        calls: list[Call] = []
        callers = [
            threading.Thread(target=call_forever, args=(client, seed, stop, calls), name=f"caller-{seed}")
            for seed in range(CALLER_THREADS)
        ]
        for caller in callers:
            caller.start()
        kills: list[float] = []
        killed: set[int] = set()
        sockets: set[Path] = set()
        try:
            for _ in range(chaos_cycles):
                time.sleep(rng.uniform(0, MAX_PAUSE_S))
                give_up = time.monotonic() + WORKER_BACK_BOUND_S
                while (pid := next((p for p in live_workers(worker_bin) if p not in killed), None)) is None:
                    assert time.monotonic() < give_up, "no worker came back"
                    time.sleep(0.002)
                sockets.update(socket_paths(pid))
                kills.append(time.monotonic())
                # It may have died on its own since it was listed (the client gave up on it).
                kill_quietly(pid)
                killed.add(pid)
        finally:
            stop.set()
            for caller in callers:
                caller.join(CALL_HANG_BOUND_S + 5.0)
        assert not any(caller.is_alive() for caller in callers), "a call hung"

        # The client brings a worker up again, and its descriptors are back where they were.
        assert client.call("echo", {"after": 1}) == {"after": 1}
        assert wait_until(lambda: fd_count() == fds_before, 5.0), f"client fds {fd_count()} != {fds_before}"
        assert wait_until(lambda: not zombie_children(os.getpid()), 5.0), "zombie workers left behind"
    finally:
        client.close()
    assert wait_until(lambda: not live_workers(worker_bin), 5.0), "a worker outlived close()"
    assert not zombie_children(os.getpid())
    assert dev_shm_names() == shm_before
    left = [str(path) for path in sockets if path.exists() or path.parent.exists()]
    assert not left, f"control sockets (or their directories) left behind: {left}"

    outcomes: dict[str, int] = {}
    for call in calls:
        outcomes[call.outcome] = outcomes.get(call.outcome, 0) + 1
    assert set(outcomes) <= {"ok", "unavailable"}, outcomes
    # How long after the kill that preceded it each failed call ended.
    latencies = []
    for call in calls:
        if call.outcome == "unavailable":
            before = [k for k in kills if k <= call.ended]
            if before:
                latencies.append(call.ended - before[-1])
    durations = [call.ended - call.started for call in calls]
    assert max(durations) < CALL_HANG_BOUND_S
    assert not latencies or max(latencies) < UNAVAILABLE_HANG_BOUND_S
    record_figures(
        f"chaos.kill_worker[{transport}]",
        cycles=chaos_cycles,
        calls=len(calls),
        ok=outcomes.get("ok", 0),
        unavailable=outcomes.get("unavailable", 0),
        wrong_replies=0,
        hung=0,
        control_sockets_checked=len(sockets),
        unavailable_after_kill_ms_p50=round(percentile(latencies, 0.50) * 1000, 2),
        unavailable_after_kill_ms_p99=round(percentile(latencies, 0.99) * 1000, 2),
        unavailable_after_kill_ms_max=round(max(latencies, default=0.0) * 1000, 2),
    )
