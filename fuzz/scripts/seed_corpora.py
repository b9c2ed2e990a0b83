#!/usr/bin/env python3
"""Writes the seed inputs (seed-*) and crash reproducers (crash-*) of every fuzz target into
fuzz/corpus/<target>/.

Seeds come from the specs, so the fuzzers start from inputs that reach deep: the hex vectors
of docs/protocol.md (frame_decode), the shipped exports manifests (manifest_parse), the
request payloads of the demo contract's golden cases (entry_list_items, entry_compute), and
hand-written payloads, ring scripts and HTTP requests for the rest; crash-* are the reproducers of fixed
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


# web_request's first byte (fuzz/src/web.rs): the route, the Content-Type, the Accept.
WEB_TO_ENTRY, WEB_MSGPACK_BODY, WEB_OTHER_BODY, WEB_ACCEPT_MSGPACK = 0x04, 0x01, 0x03, 0x10


def web_request(flags: int, id_: bytes = b"", tag: bytes = b"", query: bytes = b"", body: bytes = b"") -> bytes:
    return bytes([flags]) + b"\0".join([id_, tag, query, body])


def web_seeds() -> dict[str, bytes]:
    typed = b'{"id": 7, "name": "a", "tags": ["x", "y"], "flag": null, "kind": {"Span": {"from": -1, "to": 2}}}'
    # {"id": 1, "name": "a", "tags": ["x"], "flag": true, "kind": {"Count": 3}}
    typed_msgpack = bytes.fromhex("85a2696401a46e616d65a161a47461677391a178a4666c6167c3a46b696e6481a5436f756e7403")
    entry = WEB_TO_ENTRY
    return {
        "seed-entry-json": web_request(entry, body=typed),
        "seed-entry-json-reply-msgpack": web_request(entry | WEB_ACCEPT_MSGPACK, body=typed),
        "seed-entry-msgpack": web_request(entry | WEB_MSGPACK_BODY, body=typed_msgpack),
        "seed-entry-plain-kind": web_request(entry, body=b'{"id": 1, "name": "", "tags": [], "kind": "Plain"}'),
        "seed-entry-wrong-type": web_request(entry, body=b'{"id": "7", "name": "a", "tags": [], "kind": "Plain"}'),
        "seed-entry-unknown-field": web_request(entry, body=typed[:-1] + b', "extra": [[1]]}'),
        "seed-entry-trailing": web_request(entry, body=typed + b" {}"),
        "seed-entry-empty": web_request(entry),
        "seed-entry-text-plain": web_request(entry | WEB_OTHER_BODY, body=typed),
        "seed-path-plain": web_request(0, b"42", b"tag"),
        "seed-path-query": web_request(0, b"42", b"tag", b"limit=5&status=open&q=a+b"),
        "seed-path-bad-query": web_request(0, b"42", b"tag", b"limit=-1&status=lost"),
        "seed-path-not-a-number": web_request(0, b"abc", b"tag"),
        "seed-path-too-large": web_request(0, b"18446744073709551616", b"tag"),
        "seed-path-escaped": web_request(0, b"%34%32", b"t%C3%A9"),
        "seed-path-not-utf8": web_request(0, b"42", b"t%FFg"),
        "seed-path-empty-segment": web_request(0, b"", b"tag"),
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
        "web_request": web_seeds(),
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
