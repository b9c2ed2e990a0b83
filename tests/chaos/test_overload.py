"""Offered load at 10x what the worker can run: `spin` calls from many client threads.

The worker gets 2 compute threads and an admission queue of 4, so it runs 2 calls of
SPIN_MS at a time: its capacity is 2 / SPIN_MS calls per second. Caller threads are paced to
offer ten times that. What must hold: the surplus is answered Busy at once (not queued for
ever), admitted calls finish within a bounded time, every call gets exactly one reply (counted
by the client's hooks against the calls made, and on the wire per request_id), and the
worker's memory stays bounded.

OVERLOAD_SECONDS sets the duration (3 s in `make test`, longer in `make chaos`); the measured
figures go to docs/reliability.md, the asserts are only bounds that a hang or leak exceeds.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import threading
import time
from collections import Counter

import msgpack
import pytest

from molt_accel import Busy, CallMetrics, Hooks, MoltClient, MoltError
from molt_accel._frame import Codec, Kind, Status, decode_frame, encode_call
from reliability_support import TEST_EXPORTS, percentile, record_figures, status_value

COMPUTE_THREADS = 2
MAX_QUEUE = 4
SPIN_MS = 20
CAPACITY_PER_S = COMPUTE_THREADS * 1000 / SPIN_MS
OVERLOAD_RATIO = 10
CALLERS = 20
# Each caller offers one call per interval, so together they offer OVERLOAD_RATIO x capacity.
CALL_INTERVAL_S = CALLERS / (OVERLOAD_RATIO * CAPACITY_PER_S)
DURATION_S = float(os.environ.get("OVERLOAD_SECONDS", "3"))
CALL_TIMEOUT_MS = 5000
# Bounds only a hang or a leak exceeds.
BUSY_HANG_BOUND_S = 1.0
RSS_GROWTH_BOUND_KB = 64 * 1024


def worker_args(worker_bin: str) -> list[str]:
    return [worker_bin, "--max-queue", str(MAX_QUEUE), "--compute-threads", str(COMPUTE_THREADS)]


class RssSampler(threading.Thread):
    """Samples a process's resident set every 50 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples_kb: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.samples_kb.append(status_value(self.pid, "VmRSS"))
            except FileNotFoundError:
                return


def test_ten_times_capacity_gets_busy_at_once_and_every_call_one_reply(
    transport: str, worker_bin: str, caplog: pytest.LogCaptureFixture
) -> None:
    replies: Counter[str] = Counter()
    replies_lock = threading.Lock()

    def after_recv(entry: str, status: str, metrics: CallMetrics) -> None:
        with replies_lock:
            replies[status] += 1

    client = MoltClient(
        worker_cmd=worker_args(worker_bin),
        exports=TEST_EXPORTS,
        transport=transport,
        strict_shm=transport == "shm",
        timeout_ms=CALL_TIMEOUT_MS,
        hooks=Hooks(after_recv=after_recv),
    )
    outcomes: list[tuple[str, float]] = []
    caplog.set_level(logging.WARNING, logger="molt_accel")
    try:
        client.start()
        pid = client.worker_pid
        assert pid is not None
        rss_before_kb = status_value(pid, "VmRSS")
        sampler = RssSampler(pid)
        sampler.start()
        started = time.monotonic()
        until = started + DURATION_S

        def caller(offset: float) -> None:
            next_at = started + offset
            while True:
                now = time.monotonic()
                if now >= until:
                    return
                if next_at > now:
                    time.sleep(next_at - now)
                next_at += CALL_INTERVAL_S
                call_started = time.monotonic()
                try:
                    ok = client.call("spin", {"ms": SPIN_MS}) == {"spun_ms": SPIN_MS}
                    outcome = "ok" if ok else "wrong reply"
                except Busy:
                    outcome = "Busy"
                except MoltError as exc:
                    outcome = type(exc).__name__
                outcomes.append((outcome, time.monotonic() - call_started))

        callers = [
            threading.Thread(target=caller, args=(i * CALL_INTERVAL_S / CALLERS,)) for i in range(CALLERS)
        ]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(DURATION_S + CALL_TIMEOUT_MS / 1000 + 5.0)
        assert not any(thread.is_alive() for thread in callers), "a call hung under overload"
        elapsed = time.monotonic() - started
        sampler.stop.set()
        sampler.join()
    finally:
        client.close()

    counts = Counter(outcome for outcome, _ in outcomes)
    assert set(counts) <= {"ok", "Busy"}, counts
    assert counts["Busy"] > 0, "10x capacity never got Busy: the worker queued without bound"
    # One reply per call: the hook saw exactly one reply for every call made, and the client
    # never saw a reply it had no caller for (it logs those).
    assert replies == Counter({"Ok": counts["ok"], "Busy": counts["Busy"]})
    assert not [r for r in caplog.records if "unknown request" in r.getMessage()]
    busy_s = [t for outcome, t in outcomes if outcome == "Busy"]
    ok_s = [t for outcome, t in outcomes if outcome == "ok"]
    assert max(busy_s) < BUSY_HANG_BOUND_S
    rss_max_kb = max(sampler.samples_kb, default=rss_before_kb)
    assert rss_max_kb - rss_before_kb < RSS_GROWTH_BOUND_KB
    record_figures(
        f"overload.client_threads[{transport}]",
        seconds=round(elapsed, 1),
        capacity_per_s=CAPACITY_PER_S,
        offered_per_s=round(len(outcomes) / elapsed, 1),
        offered_ratio=round(len(outcomes) / elapsed / CAPACITY_PER_S, 1),
        calls=len(outcomes),
        ok=counts["ok"],
        busy=counts["Busy"],
        lost_or_duplicated=0,
        busy_ms_p50=round(percentile(busy_s, 0.5) * 1000, 2),
        busy_ms_p99=round(percentile(busy_s, 0.99) * 1000, 2),
        admitted_ms_p50=round(percentile(ok_s, 0.5) * 1000, 2),
        admitted_ms_p99=round(percentile(ok_s, 0.99) * 1000, 2),
        admitted_ms_max=round(max(ok_s) * 1000, 2),
        worker_rss_kb_before=rss_before_kb,
        worker_rss_kb_max=rss_max_kb,
    )


WIRE_CALLS = 3000
LENGTH = struct.Struct("<I")


def test_a_pipelined_flood_gets_exactly_one_reply_per_request_id(worker_bin: str) -> None:
    """The same overload without the client in between: a burst of calls written as fast as
    the pipe takes them, and every request_id answered exactly once, Ok or Busy."""
    proc = subprocess.Popen(
        [*worker_args(worker_bin), "--stdio", "--exports", str(TEST_EXPORTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    replies: Counter[int] = Counter()
    statuses: Counter[Status] = Counter()

    def read_replies() -> None:
        assert proc.stdout is not None
        while True:
            prefix = proc.stdout.read(LENGTH.size)
            if len(prefix) < LENGTH.size:
                return
            frame = decode_frame(proc.stdout.read(LENGTH.unpack(prefix)[0]))
            assert frame.kind is Kind.REPLY
            replies[frame.request_id] += 1
            statuses[frame.status] += 1

    reader = threading.Thread(target=read_replies, daemon=True)
    reader.start()
    payload = msgpack.packb({"ms": 2})
    for request_id in range(1, WIRE_CALLS + 1):
        frame = encode_call(request_id, b"spin", Codec.MSGPACK, 0, 0, payload)
        proc.stdin.write(LENGTH.pack(len(frame)) + frame)
    # EOF: the worker answers whatever is still queued (Cancelled), flushes and exits.
    proc.stdin.close()
    reader.join(30.0)
    assert not reader.is_alive(), "the worker never finished answering"
    assert proc.wait(10.0) == 0
    assert set(replies) == set(range(1, WIRE_CALLS + 1)), "a request got no reply"
    assert set(replies.values()) == {1}, "a request got more than one reply"
    assert statuses[Status.BUSY] > 0
    assert set(statuses) <= {Status.OK, Status.BUSY, Status.CANCELLED}, statuses
    record_figures(
        "overload.wire_flood[stdio]",
        calls=WIRE_CALLS,
        replies=sum(replies.values()),
        **{status.name.lower(): count for status, count in statuses.items()},
        lost_or_duplicated=0,
    )
