"""The Python client's frame decoder held to the properties the Rust fuzz target checks.

client-py/tests/test_frame.py already shows the decoder raises only ProtocolError on garbage
and on corrupted frames. Here, for the inputs libFuzzer found against the Rust decoder
(fuzz/corpus/frame_decode, committed) and for hypothesis's corruptions of valid frames:

- a buffer the decoder accepts re-encodes to exactly the same bytes (nothing non-canonical,
  such as a set reserved bit or trailing bytes, slips through);
- an error the client may answer per request carries the request id found at its fixed
  offset, and only comes from a buffer whose declared lengths add up (its framing is intact).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from molt_accel import ProtocolError
from molt_accel._frame import DEFAULT_MAX_FRAME_BYTES, HEADER_LEN, Codec, Frame, Kind, Status, decode_frame, encode_frame
from reliability_support import REPO

CORPUS = REPO / "fuzz" / "corpus" / "frame_decode"
REQUEST_ID = struct.Struct("<Q")


def declared_len(data: bytes) -> int | None:
    if len(data) < HEADER_LEN or data[:4] != b"MOLT" or data[4] != 1:
        return None
    (entry_len,) = struct.unpack_from("<H", data, 12)
    (payload_len,) = struct.unpack_from("<I", data, 44)
    return HEADER_LEN + entry_len + payload_len


def check_decoder_properties(data: bytes) -> None:
    try:
        frame = decode_frame(data, DEFAULT_MAX_FRAME_BYTES)
    except ProtocolError as exc:
        if exc.request_id is not None:
            assert exc.request_id == REQUEST_ID.unpack_from(data, 16)[0]
            assert declared_len(data) == len(data), "answerable error on a frame whose framing is broken"
        return
    assert encode_frame(frame) == data, "accepted a frame that does not re-encode to its bytes"


def corpus_inputs() -> list[Path]:
    return sorted(CORPUS.iterdir())


def test_the_committed_fuzz_corpus_is_there() -> None:
    assert len(corpus_inputs()) >= 6, f"{CORPUS} lost its seeds (fuzz/scripts/seed_corpora.py)"


@pytest.mark.parametrize("path", corpus_inputs(), ids=lambda path: path.name[:16])
def test_every_rust_fuzz_input_keeps_the_python_decoder_properties(path: Path) -> None:
    check_decoder_properties(path.read_bytes())


frames = st.builds(
    Frame,
    kind=st.sampled_from(Kind),
    request_id=st.integers(0, 2**64 - 1),
    codec=st.sampled_from(Codec),
    status=st.sampled_from(Status),
    flags=st.sampled_from([0, 1]),
    deadline_ns=st.integers(0, 2**64 - 1),
    queue_us=st.integers(0, 2**32 - 1),
    exec_us=st.integers(0, 2**32 - 1),
    queue_depth=st.integers(0, 2**32 - 1),
    entry=st.just(""),
    payload=st.binary(max_size=64),
).map(lambda f: f._replace(entry="entry") if f.kind is Kind.CALL else f)


@settings(max_examples=1000)
@given(
    frames,
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=4),
    st.integers(-8, 8),
)
def test_corrupted_frames_keep_the_decoder_properties(frame: Frame, corruptions: list[tuple[int, int]], resize: int) -> None:
    data = bytearray(encode_frame(frame))
    for offset, value in corruptions:
        if offset < len(data):
            data[offset] = value
    data = data[: len(data) + resize] if resize < 0 else data + bytes(resize)
    check_decoder_properties(bytes(data))
