"""The protocol v1 codec against the hex vectors of docs/protocol.md, read from the doc."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from molt_accel._exceptions import ProtocolError
from molt_accel._codecs import get_codec
from molt_accel._frame import (
    FLAG_IDEMPOTENT,
    HEADER_LEN,
    Codec,
    Frame,
    Kind,
    Status,
    decode_frame,
    encode_call,
    encode_frame,
)

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
MSGPACK_X_1 = bytes.fromhex("81a17801")


def vector(name: str) -> bytes:
    match = re.search(rf"```vector {re.escape(name)}\n(.*?)```", PROTOCOL_MD.read_text(), re.S)
    assert match, f"no vector {name} in protocol.md"
    return bytes.fromhex("".join(match.group(1).split()))


EXPECTED = {
    "call": Frame(
        kind=Kind.CALL,
        request_id=1,
        codec=Codec.MSGPACK,
        flags=FLAG_IDEMPOTENT,
        deadline_ns=1_000_000_000,
        entry="echo",
        payload=MSGPACK_X_1,
    ),
    "reply-ok": Frame(
        kind=Kind.REPLY, request_id=1, codec=Codec.MSGPACK, queue_us=12, exec_us=34, queue_depth=2, payload=MSGPACK_X_1
    ),
    "reply-error": Frame(
        kind=Kind.REPLY, request_id=2, status=Status.NOT_FOUND, payload=b"unknown entry: nope"
    ),
    "cancel": Frame(kind=Kind.CANCEL, request_id=1),
    "ping": Frame(kind=Kind.PING, request_id=3),
    "pong": Frame(kind=Kind.PONG, request_id=3),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_every_vector_encodes_to_the_documented_bytes(name: str) -> None:
    assert encode_frame(EXPECTED[name]) == vector(name)


@pytest.mark.parametrize("name", EXPECTED)
def test_every_vector_decodes_to_the_documented_frame(name: str) -> None:
    assert decode_frame(vector(name)) == EXPECTED[name]


def test_the_hot_path_call_encoder_matches_the_call_vector() -> None:
    frame = encode_call(1, b"echo", Codec.MSGPACK, FLAG_IDEMPOTENT, 1_000_000_000, msgpack.packb({"x": 1}))
    assert frame == vector("call")


def test_the_msgpack_payload_of_the_vectors_is_the_documented_value() -> None:
    assert get_codec("msgpack").decode(decode_frame(vector("reply-ok")).payload) == {"x": 1}
    assert get_codec("msgpack").encode({"x": 1}) == MSGPACK_X_1


def test_the_stdio_ping_in_the_doc_is_the_length_prefix_then_the_ping_vector() -> None:
    doc = PROTOCOL_MD.read_text()
    block = doc[doc.index("these 52 bytes:") :].split("```")[1]
    stdio_bytes = bytes.fromhex("".join(block.split()))
    assert stdio_bytes == struct.pack("<I", HEADER_LEN) + vector("ping")


def test_a_frame_over_the_maximum_is_refused_before_reading_it() -> None:
    data = encode_frame(Frame(kind=Kind.CALL, request_id=1, entry="echo", payload=bytes(100)))
    with pytest.raises(ProtocolError, match="exceeds the maximum") as caught:
        decode_frame(data, max_frame_bytes=64)
    assert caught.value.request_id is None


def test_a_length_mismatch_breaks_the_stream() -> None:
    data = encode_frame(Frame(kind=Kind.CALL, request_id=3, entry="echo", payload=b"abc"))
    with pytest.raises(ProtocolError) as caught:
        decode_frame(data[:-1])
    assert caught.value.request_id is None


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [(5, 42, "kind"), (6, 9, "codec"), (7, 9, "status"), (8, 2, "flag"), (14, 1, "reserved")],
)
def test_an_unknown_field_is_answerable_with_the_request_id(offset: int, value: int, reason: str) -> None:
    data = bytearray(encode_frame(Frame(kind=Kind.PING, request_id=11)))
    data[offset] = value
    with pytest.raises(ProtocolError, match=reason) as caught:
        decode_frame(bytes(data))
    assert caught.value.request_id == 11


def test_only_calls_carry_an_entry_name() -> None:
    data = bytearray(encode_frame(Frame(kind=Kind.CALL, request_id=4, entry="x")))
    data[5] = Kind.PING
    with pytest.raises(ProtocolError, match="only calls") as caught:
        decode_frame(bytes(data))
    assert caught.value.request_id == 4


def test_an_entry_name_that_is_not_utf8_is_answerable() -> None:
    data = bytearray(encode_frame(Frame(kind=Kind.CALL, request_id=5, entry="ab")))
    data[HEADER_LEN] = 0xFF
    with pytest.raises(ProtocolError, match="UTF-8") as caught:
        decode_frame(bytes(data))
    assert caught.value.request_id == 5


def test_encoding_refuses_an_entry_name_over_255_bytes() -> None:
    with pytest.raises(ValueError):
        encode_frame(Frame(kind=Kind.CALL, request_id=1, entry="e" * 256))


frames = st.builds(
    Frame,
    kind=st.sampled_from(Kind),
    request_id=st.integers(0, 2**64 - 1),
    codec=st.sampled_from(Codec),
    status=st.sampled_from(Status),
    flags=st.sampled_from([0, FLAG_IDEMPOTENT]),
    deadline_ns=st.integers(0, 2**64 - 1),
    queue_us=st.integers(0, 2**32 - 1),
    exec_us=st.integers(0, 2**32 - 1),
    queue_depth=st.integers(0, 2**32 - 1),
    entry=st.just(""),
    payload=st.binary(max_size=64),
).map(lambda f: f._replace(entry="entry") if f.kind is Kind.CALL else f)


@given(frames)
def test_every_valid_frame_round_trips(frame: Frame) -> None:
    assert decode_frame(encode_frame(frame)) == frame


@settings(max_examples=500)
@given(st.binary(max_size=128), st.integers(HEADER_LEN, 256))
def test_the_decoder_raises_only_protocol_error_on_garbage(data: bytes, max_frame_bytes: int) -> None:
    try:
        decode_frame(data, max_frame_bytes)
    except ProtocolError:
        pass


@settings(max_examples=500)
@given(frames, st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=6), st.integers(0, 64))
def test_the_decoder_raises_only_protocol_error_on_corrupted_frames(
    frame: Frame, corruptions: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(encode_frame(frame))
    for offset, value in corruptions:
        if offset < len(data):
            data[offset] = value
    try:
        decode_frame(bytes(data[: len(data) - cut]))
    except ProtocolError:
        pass
