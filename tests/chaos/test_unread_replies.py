"""A client that keeps sending but never reads its replies (stuck, or SIGSTOPped between its
writes and its reads) cannot make the worker buffer replies without bound: the worker stops
reading calls, so the client's writes block and the worker's memory stays flat."""

from __future__ import annotations

import struct
import subprocess
import threading
import time

from molt_accel._frame import Codec, Frame, Kind, decode_frame, encode_call, encode_frame
from reliability_support import TEST_EXPORTS, record_figures, status_value, wait_until

LENGTH = struct.Struct("<I")
PAYLOAD = b"x" * 8192
# 20,000 replies of 8 KiB would be 160 MiB if the worker buffered them all.
CALLS = 20_000
RSS_GROWTH_BOUND_KB = 64 * 1024


def test_unread_replies_stop_the_worker_reading_calls(worker_bin: str) -> None:
    proc = subprocess.Popen(
        [worker_bin, "--stdio", "--exports", str(TEST_EXPORTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    # Measure the worker once it is up (it answers a ping), not the process still exec'ing.
    ping = encode_frame(Frame(kind=Kind.PING, request_id=0))
    proc.stdin.write(LENGTH.pack(len(ping)) + ping)
    proc.stdin.flush()
    assert decode_frame(proc.stdout.read(LENGTH.unpack(proc.stdout.read(LENGTH.size))[0])).kind is Kind.PONG
    rss_before_kb = status_value(proc.pid, "VmRSS")
    written = 0

    def write_calls() -> None:
        nonlocal written
        assert proc.stdin is not None
        try:
            for request_id in range(1, CALLS + 1):
                frame = encode_call(request_id, b"echo", Codec.RAW, 0, 0, PAYLOAD)
                proc.stdin.write(LENGTH.pack(len(frame)) + frame)
                written = request_id
        except (BrokenPipeError, ValueError):
            pass  # The test killed the worker (or closed the pipe) while this write blocked.

    writer = threading.Thread(target=write_calls, daemon=True)
    writer.start()
    try:
        # The writer blocks once the worker stops reading: `written` stops moving.
        last = -1
        while written != last:
            last = written
            time.sleep(0.5)
        assert written < CALLS, "the worker took every call although no reply was read"
        rss_kb = status_value(proc.pid, "VmRSS")
        assert rss_kb - rss_before_kb < RSS_GROWTH_BOUND_KB
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        writer.join(5.0)
    assert wait_until(lambda: not writer.is_alive(), 5.0)
    record_figures(
        "chaos.unread_replies[stdio]",
        calls_accepted_before_backpressure=written,
        worker_rss_kb_before=rss_before_kb,
        worker_rss_kb_after=rss_kb,
    )
