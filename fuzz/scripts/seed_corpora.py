#!/usr/bin/env python3
"""Writes the seed inputs (seed-*) and crash reproducers (crash-*) of every fuzz target into
fuzz/corpus/<target>/.

Seeds come from the specs, so the fuzzers start from inputs that reach deep: the hex vectors
of docs/protocol.md (frame_decode), the shipped exports manifests (manifest_parse), the
request payloads of the demo contract's golden cases (entry_list_items, entry_compute), and
hand-written payloads and ring scripts for the rest; crash-* are the reproducers of fixed
crashes. Rerun after those specs change and after `cargo fuzz cmin` (which renames inputs
by content); inputs the fuzzers found are left alone.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "fuzz" / "corpus"
# Wire values of the codecs (docs/protocol.md): the first byte of an entry_* input.
MSGPACK, JSON = 1, 2


def protocol_vectors() -> dict[str, bytes]:
    text = (REPO / "docs" / "protocol.md").read_text()
    return {
        name: bytes.fromhex("".join(body.split()))
        for name, body in re.findall(r"```vector (\S+)\n(.*?)```", text, re.S)
    }


def golden_requests(entry: str) -> list[bytes]:
    cases = json.loads((REPO / "demo" / "worker_app" / "tests" / "fixtures" / "contract_golden.json").read_text())["cases"]
    out = []
    for case in cases:
        if case["entry"] != entry:
            continue
        out.append(bytes([JSON]) + case["request_json"].encode())
        if case["request_msgpack_hex"] is not None:  # None: a case only JSON can express
            out.append(bytes([MSGPACK]) + bytes.fromhex(case["request_msgpack_hex"]))
    return out


def ring_script(*ops: tuple[int, ...] | bytes) -> bytes:
    return b"".join(op if isinstance(op, bytes) else bytes(op) for op in ops)


def hostile_write(offset: int, data: bytes) -> bytes:
    return bytes([0]) + struct.pack("<HB", offset, len(data)) + data


# Inputs that once crashed a target (docs/reliability.md, "Bugs found"), kept under fixed
# names so that minimizing a corpus never drops them: 2,000 levels of msgpack nesting
# overflowed a debug build's stack through the entries.
ENTRY_REPRODUCERS = {
    "crash-deep-msgpack-array": bytes([MSGPACK]) + b"\x91" * 2000 + b"\x01",
    "crash-deep-msgpack-map": bytes([MSGPACK]) + b"\x81\xa1k" * 2000 + b"\x01",
}


def seeds() -> dict[str, dict[str, bytes]]:
    vectors = protocol_vectors()
    manifests = {p.stem: p.read_bytes() for p in REPO.glob("molt_exports*.json")}
    # Offsets in a segment of two 256-byte rings (ipc-ring/src/segment.rs): the request ring's
    # control block at 128 (head +0, tail +128), its data at 512; the response ring at 768.
    request_tail, request_data, response_tail = 128 + 128, 128 + 384, 768 + 128
    return {
        "frame_decode": {f"seed-{name}": data for name, data in vectors.items()},
        "manifest_parse": {
            **{f"seed-{name}": data for name, data in manifests.items()},
            "seed-empty": b'{"entries": {}}',
            "seed-zero-concurrency": b'{"entries": {"compute": {"max_concurrency": 0}}}',
            "seed-unknown-option": b'{"entries": {"echo": {"timeout": 5}}}',
        },
        "entry_list_items": {
            **{f"seed-golden-{i}": data for i, data in enumerate(golden_requests("list_items"))},
            **ENTRY_REPRODUCERS,
        },
        "entry_compute": {
            **{f"seed-golden-{i}": data for i, data in enumerate(golden_requests("compute"))},
            **ENTRY_REPRODUCERS,
        },
        "entry_sleep": {
            **ENTRY_REPRODUCERS,
            "seed-json": bytes([JSON]) + b'{"ms": 5}',
            "seed-msgpack": bytes([MSGPACK]) + b"\x81\xa2ms\x05",
            "seed-over-max": bytes([JSON]) + b'{"ms": 60001}',
        },
        "entry_spin": {
            **ENTRY_REPRODUCERS,
            "seed-json": bytes([JSON]) + b'{"ms": 5}',
            "seed-msgpack": bytes([MSGPACK]) + b"\x81\xa2ms\x05",
            "seed-negative": bytes([JSON]) + b'{"ms": -1}',
        },
        "ring_consumer": {
            "seed-push-pop": ring_script((1, 10, 3, 2, 20, 4, 5)),
            "seed-wrap": ring_script(*[(1, 100, 3)] * 6, (5,)),
            "seed-full": ring_script(*[(2, 120)] * 3, (5,)),
            "seed-hostile-tail": ring_script((1, 16), hostile_write(request_tail, struct.pack("<Q", 1 << 40)), (5,)),
            "seed-hostile-record": ring_script(
                (1, 16), hostile_write(request_data, struct.pack("<II", 0xFFFF, 1)), (3, 5)
            ),
            "seed-hostile-response-tail": ring_script(hostile_write(response_tail, struct.pack("<Q", 8)), (4, 5)),
        },
    }


def main() -> None:
    for target, inputs in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in inputs.items():
            (directory / name).write_bytes(data)
        print(f"{target}: {len(inputs)} seeds")


if __name__ == "__main__":
    main()
