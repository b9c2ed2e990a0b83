"""Payload codecs: how a Python value becomes the payload bytes of a call and back.

``msgpack`` (the default) and ``json`` carry any value their format can hold; ``raw`` carries
``bytes`` unchanged. The worker replies in the call's codec.

Two codecs keep the reply's bytes as they are, for replies that go on unchanged: ``json_body``
sends the payload as JSON and returns the JSON bytes the entry wrote (a response body, passed
through without decoding and re-encoding it); ``arrow_ipc`` sends the payload as MsgPack and
returns the Arrow IPC stream the entry wrote.

>>> get_codec("json").decode(get_codec("json").encode({"x": 1}))
{'x': 1}
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Callable

import msgpack

from ._exceptions import InvalidInput, ProtocolError
from ._frame import Codec

__all__ = ["PayloadCodec", "get_codec", "CODEC_NAMES"]


@dataclass(frozen=True, slots=True)
class PayloadCodec:
    """A named payload encoding and its wire value."""

    name: str
    wire: Codec
    _encode: Callable[[Any], bytes]
    _decode: Callable[[bytes], Any]
    #: The codec the reply must come in, when it is not the request's.
    reply_wire: Codec | None = None

    @property
    def expected_reply(self) -> Codec:
        """The codec a successful reply to a call in this codec carries."""
        return self.wire if self.reply_wire is None else self.reply_wire

    def encode(self, value: Any) -> bytes:
        """The payload bytes for ``value``; :class:`InvalidInput` if the format cannot hold it."""
        try:
            return self._encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"payload cannot be encoded as {self.name}: {type(exc).__name__}") from None

    def decode(self, data: bytes) -> Any:
        """The value a reply payload holds; :class:`ProtocolError` if it is not valid."""
        try:
            return self._decode(data)
        except Exception:
            # Any failure here means the worker sent bytes that do not match the codec it
            # named: a protocol violation, whatever the codec library calls it.
            raise ProtocolError(f"reply payload is not valid {self.name}") from None


def _raw_encode(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("raw payloads are bytes")
    return bytes(value)


# One encoder for every call: json.dumps with options builds a JSONEncoder each time, a third
# of what encoding a small payload costs. Its encode keeps no state between calls, so threads
# share it.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _json_encode(value: Any) -> bytes:
    return _JSON_ENCODER.encode(value).encode()


_CODECS = {
    codec.name: codec
    for codec in (
        # packb, not a shared Packer: a Packer keeps a buffer and is not thread-safe.
        PayloadCodec("msgpack", Codec.MSGPACK, msgpack.packb, functools.partial(msgpack.unpackb, strict_map_key=False)),
        PayloadCodec("json", Codec.JSON, _json_encode, json.loads),
        PayloadCodec("raw", Codec.RAW, _raw_encode, bytes),
        PayloadCodec("json_body", Codec.JSON, _json_encode, bytes),
        PayloadCodec("arrow_ipc", Codec.MSGPACK, msgpack.packb, bytes, reply_wire=Codec.ARROW_IPC),
    )
}
CODEC_NAMES = tuple(_CODECS)


def get_codec(name: str) -> PayloadCodec:
    """The codec called ``name`` (one of :data:`CODEC_NAMES`)."""
    try:
        return _CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; choose one of {', '.join(CODEC_NAMES)}") from None
