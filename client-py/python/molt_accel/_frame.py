"""Frame protocol v1 in pure Python: the byte layout of ``docs/protocol.md``.

A frame is a 48-byte little-endian header, then the entry name (calls only), then the payload.
:func:`encode_frame` and :func:`decode_frame` mirror the Rust codec in
``ipc-ring/src/frame.rs``; both are tested against the hex vectors of ``docs/protocol.md``.

:func:`decode_frame` treats its input as untrusted: every length is checked against the buffer
and the configured maximum before it is used, and the only exception it raises is
:class:`~molt_accel.ProtocolError`. Its ``request_id`` is set when the framing was intact and
only a field was not understood (that one request can be answered), and ``None`` when the
stream itself can no longer be trusted.

>>> frame = Frame(kind=Kind.CALL, request_id=7, entry="echo", payload=b"hi")
>>> decode_frame(encode_frame(frame)) == frame
True
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from ._exceptions import ProtocolError

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_LEN",
    "MAX_ENTRY_LEN",
    "DEFAULT_MAX_FRAME_BYTES",
    "FLAG_IDEMPOTENT",
    "Kind",
    "Codec",
    "Status",
    "Frame",
    "encode_frame",
    "encode_call",
    "decode_frame",
]

MAGIC = b"MOLT"
VERSION = 1
HEADER_LEN = 48
MAX_ENTRY_LEN = 255
DEFAULT_MAX_FRAME_BYTES = 16 << 20
FLAG_IDEMPOTENT = 1
_KNOWN_FLAGS = FLAG_IDEMPOTENT

# magic, version, kind, codec, status, flags, entry_len, reserved, request_id, deadline_ns,
# queue_us, exec_us, queue_depth, payload_len
_HEADER = struct.Struct("<4sBBBBIHHQQIIII")
assert _HEADER.size == HEADER_LEN


class Kind(enum.IntEnum):
    """What a frame is for."""

    CALL = 1
    REPLY = 2
    CANCEL = 3
    PING = 4
    PONG = 5


class Codec(enum.IntEnum):
    """How a payload is encoded."""

    RAW = 0
    MSGPACK = 1
    JSON = 2
    ARROW_IPC = 3


class Status(enum.IntEnum):
    """The outcome a reply reports; ``name_`` is the spelling used by errors and hooks."""

    OK = 0
    INVALID_INPUT = 1
    NOT_FOUND = 2
    BUSY = 3
    TIMEOUT = 4
    CANCELLED = 5
    INTERNAL_ERROR = 6
    PROTOCOL_ERROR = 7
    UNAVAILABLE = 8

    @property
    def wire_name(self) -> str:
        """The status as the protocol docs and :mod:`molt_accel` errors spell it."""
        return _STATUS_NAMES[self]


_STATUS_NAMES = {
    Status.OK: "Ok",
    Status.INVALID_INPUT: "InvalidInput",
    Status.NOT_FOUND: "NotFound",
    Status.BUSY: "Busy",
    Status.TIMEOUT: "Timeout",
    Status.CANCELLED: "Cancelled",
    Status.INTERNAL_ERROR: "InternalError",
    Status.PROTOCOL_ERROR: "ProtocolError",
    Status.UNAVAILABLE: "Unavailable",
}
# Plain dicts: enum construction by value is several times slower than a lookup, and decode
# runs once per reply.
_KINDS = {int(k): k for k in Kind}
_CODECS = {int(c): c for c in Codec}
_STATUSES = {int(s): s for s in Status}
_CALL = int(Kind.CALL)


class Frame(NamedTuple):
    """One decoded (or to-be-encoded) frame. Defaults are those of a bare frame.

    A named tuple rather than a frozen dataclass: a reply is decoded for every call, and
    building a tuple costs a fraction of a frozen dataclass's per-field ``__setattr__``.
    """

    kind: Kind
    request_id: int
    codec: Codec = Codec.RAW
    status: Status = Status.OK
    flags: int = 0
    deadline_ns: int = 0
    queue_us: int = 0
    exec_us: int = 0
    queue_depth: int = 0
    entry: str = ""
    payload: bytes = b""

    @property
    def idempotent(self) -> bool:
        """Whether the idempotent flag is set."""
        return bool(self.flags & FLAG_IDEMPOTENT)


def encode_frame(frame: Frame) -> bytes:
    """The frame's bytes (without any transport length prefix).

    Raises ``ValueError`` for values the layout cannot hold (an entry name over 255 bytes, an
    out-of-range integer): those are caller bugs, never peer input.
    """
    entry = frame.entry.encode()
    if len(entry) > MAX_ENTRY_LEN:
        raise ValueError(f"entry name longer than {MAX_ENTRY_LEN} bytes")
    try:
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            frame.kind,
            frame.codec,
            frame.status,
            frame.flags,
            len(entry),
            0,
            frame.request_id,
            frame.deadline_ns,
            frame.queue_us,
            frame.exec_us,
            frame.queue_depth,
            len(frame.payload),
        )
    except struct.error as exc:
        raise ValueError(f"frame field out of range: {exc}") from None
    return b"".join((header, entry, frame.payload))


def encode_call(request_id: int, entry: bytes, codec: Codec, flags: int, deadline_ns: int, payload: bytes) -> bytes:
    """A call frame for the hot path: the bytes ``encode_frame`` gives for the same call,
    without building a :class:`Frame`. ``entry`` is already UTF-8 and at most 255 bytes (the
    client checks it once per call)."""
    header = _HEADER.pack(
        MAGIC, VERSION, Kind.CALL, codec, Status.OK, flags, len(entry), 0,
        request_id, deadline_ns, 0, 0, 0, len(payload),
    )
    return b"".join((header, entry, payload))


def decode_frame(buf: bytes | bytearray | memoryview, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    """Decodes one whole frame; ``buf`` is exactly the frame, as the transport delimited it.

    Checks, in order: size against ``max_frame_bytes``, header present, magic, version, that the
    declared lengths add up to ``len(buf)``, then every field. Raises only
    :class:`ProtocolError`.
    """
    size = len(buf)
    if size > max_frame_bytes:
        raise ProtocolError(f"frame of {size} bytes exceeds the maximum of {max_frame_bytes}")
    if size < HEADER_LEN:
        raise ProtocolError(f"truncated frame: {size} bytes, header needs {HEADER_LEN}")
    (magic, version, kind_v, codec_v, status_v, flags, entry_len, reserved, request_id, deadline_ns,
     queue_us, exec_us, queue_depth, payload_len) = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ProtocolError("bad magic: not a molt frame")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version} (this peer speaks {VERSION})")
    declared = HEADER_LEN + entry_len + payload_len
    if declared != size:
        raise ProtocolError(f"header declares {declared} bytes but the frame has {size}")
    kind = _KINDS.get(kind_v)
    codec = _CODECS.get(codec_v)
    status = _STATUSES.get(status_v)
    if kind is None:
        raise ProtocolError(f"unknown frame kind {kind_v}", request_id=request_id)
    if codec is None:
        raise ProtocolError(f"unknown codec {codec_v}", request_id=request_id)
    if status is None:
        raise ProtocolError(f"unknown status {status_v}", request_id=request_id)
    if flags & ~_KNOWN_FLAGS:
        raise ProtocolError(f"unknown flag bits {flags:#x}", request_id=request_id)
    if reserved:
        raise ProtocolError(f"reserved field must be 0, got {reserved}", request_id=request_id)
    if not entry_len:
        return Frame(kind, request_id, codec, status, flags, deadline_ns, queue_us, exec_us, queue_depth, "",
                     bytes(buf[HEADER_LEN:]))
    if kind_v != _CALL:
        raise ProtocolError(f"only calls carry an entry name (entry_len {entry_len})", request_id=request_id)
    if entry_len > MAX_ENTRY_LEN:
        raise ProtocolError(f"entry name of {entry_len} bytes exceeds {MAX_ENTRY_LEN}", request_id=request_id)
    # The lengths were checked to add up to len(buf) above, so both slices are in bounds.
    entry_end = HEADER_LEN + entry_len
    try:
        entry = bytes(buf[HEADER_LEN:entry_end]).decode()
    except UnicodeDecodeError:
        raise ProtocolError("entry name is not UTF-8", request_id=request_id) from None
    return Frame(kind, request_id, codec, status, flags, deadline_ns, queue_us, exec_us, queue_depth, entry,
                 bytes(buf[entry_end:]))
