"""EOF on stdin while calls are completing: every call still gets its one reply.

Regression test for a lost reply (docs/reliability.md, bug 1): a compute thread that had
chosen its call's reply but not yet handed it to the stdio writer raced the shutdown that EOF
starts; the shutdown saw the call as answered, closed the writer, and the reply was dropped.
A burst of short `spin` calls followed at once by EOF puts completions right on top of the
shutdown; before the fix, about one round in seven lost a reply.
"""

from __future__ import annotations

import struct
import subprocess
import threading
from collections import Counter

import msgpack

from molt_accel._frame import Codec, Status, decode_frame, encode_call
from reliability_support import TEST_EXPORTS

ROUNDS = 30
CALLS_PER_ROUND = 300
LENGTH = struct.Struct("<I")


def one_round(worker_bin: str) -> tuple[set[int], Counter[int], Counter[Status]]:
    proc = subprocess.Popen(
        [worker_bin, "--stdio", "--exports", str(TEST_EXPORTS), "--max-queue", "4", "--compute-threads", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    replies: Counter[int] = Counter()
    statuses: Counter[Status] = Counter()

    def read_replies() -> None:
        assert proc.stdout is not None
        while len(prefix := proc.stdout.read(LENGTH.size)) == LENGTH.size:
            frame = decode_frame(proc.stdout.read(LENGTH.unpack(prefix)[0]))
            replies[frame.request_id] += 1
            statuses[frame.status] += 1

    reader = threading.Thread(target=read_replies, daemon=True)
    reader.start()
    payload = msgpack.packb({"ms": 1})
    proc.stdin.write(
        b"".join(
            LENGTH.pack(len(frame)) + frame
            for frame in (
                encode_call(request_id, b"spin", Codec.MSGPACK, 0, 0, payload)
                for request_id in range(1, CALLS_PER_ROUND + 1)
            )
        )
    )
    proc.stdin.close()
    reader.join(20.0)
    assert not reader.is_alive(), "the worker never finished answering"
    assert proc.wait(10.0) == 0
    return set(range(1, CALLS_PER_ROUND + 1)) - set(replies), replies, statuses


def test_eof_right_after_a_burst_loses_no_reply(worker_bin: str) -> None:
    for round_number in range(ROUNDS):
        missing, replies, statuses = one_round(worker_bin)
        assert not missing, f"round {round_number}: no reply to {sorted(missing)} ({dict(statuses)})"
        assert set(replies.values()) == {1}, f"round {round_number}: a request got two replies"
