//! Frame protocol v1: the one wire format both transports carry.
//!
//! A frame is a fixed 48-byte little-endian header, then the entry name (`entry_len` bytes of
//! UTF-8, calls only), then the payload (`payload_len` bytes). `docs/protocol.md` gives the
//! layout byte for byte, with hex test vectors that `tests/vectors.rs` and the Python client's
//! tests both check.
//!
//! Decoding never panics and never allocates: [`decode`] borrows the entry name and payload
//! from the buffer after checking every length against the buffer and the configured maximum.
//! Errors come in two kinds, told apart by [`DecodeError::request_id`]: a frame whose
//! framing is intact but whose fields are not understood (unknown kind, codec, flags, ...)
//! carries the request id, so the peer can answer that one request with `ProtocolError` and
//! go on; anything else (bad magic, bad version, lengths that disagree with the frame) means
//! the stream can no longer be trusted.
//!
//! ```
//! use molt_ipc_ring::frame::{self, Codec, Frame, Kind};
//!
//! let call = Frame::call(7, "echo", Codec::Raw, b"hi").with_deadline_ns(1_000);
//! let bytes = call.encode_to_vec();
//! let back = frame::decode(&bytes, frame::DEFAULT_MAX_FRAME_BYTES).unwrap();
//! assert_eq!(back.kind, Kind::Call);
//! assert_eq!(back.entry, "echo");
//! assert_eq!(back.payload, b"hi");
//! assert_eq!(back.deadline_ns, 1_000);
//! ```

use core::fmt;

/// The four bytes every frame starts with: `"MOLT"`.
pub const MAGIC: [u8; 4] = *b"MOLT";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 48;
/// Longest entry name a call may carry, in bytes.
pub const MAX_ENTRY_LEN: usize = 255;
/// Default for the largest frame (header included) a peer accepts: 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// Byte offset of `kind` (u8) in the header, for readers that peek before decoding.
pub const KIND_OFFSET: usize = 5;
/// Byte offset of `request_id` in the header, for readers that peek before decoding.
pub const REQUEST_ID_OFFSET: usize = 16;
/// Byte offset of `deadline_ns` in the header, for readers that peek before decoding.
pub const DEADLINE_OFFSET: usize = 24;
/// Byte offset of `entry_len` (u16) in the header, for readers that peek before decoding.
pub const ENTRY_LEN_OFFSET: usize = 12;
/// Byte offset of `payload_len` (u32, the header's last field), for readers that peek before
/// decoding.
pub const PAYLOAD_LEN_OFFSET: usize = 44;

/// What a frame is for.
///
/// ```
/// use molt_ipc_ring::frame::Kind;
/// assert_eq!(Kind::from_u8(4), Some(Kind::Ping));
/// assert_eq!(Kind::from_u8(9), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client to worker: run an entry.
    Call = 1,
    /// Worker to client: the one answer to a call.
    Reply = 2,
    /// Client to worker: stop the call with this request id.
    Cancel = 3,
    /// Client to worker: are you there?
    Ping = 4,
    /// Worker to client: the answer to a ping, with the same request id.
    Pong = 5,
}

impl Kind {
    /// The kind with this wire value, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Call,
            2 => Self::Reply,
            3 => Self::Cancel,
            4 => Self::Ping,
            5 => Self::Pong,
            _ => return None,
        })
    }
}

/// How the payload is encoded.
///
/// ```
/// use molt_ipc_ring::frame::Codec;
/// assert_eq!(Codec::from_u8(1), Some(Codec::MsgPack));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// Opaque bytes; also the codec of every error reply (a UTF-8 message).
    Raw = 0,
    /// MessagePack.
    MsgPack = 1,
    /// JSON (UTF-8).
    Json = 2,
    /// Apache Arrow IPC stream.
    ArrowIpc = 3,
}

impl Codec {
    /// The codec with this wire value, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Raw,
            1 => Self::MsgPack,
            2 => Self::Json,
            3 => Self::ArrowIpc,
            _ => return None,
        })
    }
}

/// The outcome a reply reports. Every frame other than a reply carries `Ok` (0).
///
/// ```
/// use molt_ipc_ring::frame::Status;
/// assert_eq!(Status::from_u8(3), Some(Status::Busy));
/// assert_eq!(Status::Busy.name(), "Busy");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// The entry ran and the payload is its result.
    Ok = 0,
    /// The payload could not be decoded or broke the entry's contract.
    InvalidInput = 1,
    /// No such entry, or it is not enabled by the exports manifest.
    NotFound = 2,
    /// The worker is at capacity; nothing was run.
    Busy = 3,
    /// The deadline passed before the entry finished (queue time counts).
    Timeout = 4,
    /// A cancel frame stopped the call.
    Cancelled = 5,
    /// The entry failed in a way that is the worker's fault.
    InternalError = 6,
    /// The request frame was not understood.
    ProtocolError = 7,
    /// A service the entry needs (its database, say) is unavailable; nothing was done, and
    /// a later call may succeed. Added in molt 0.2: an older peer reads it as an unknown
    /// status (a ProtocolError).
    Unavailable = 8,
}

impl Status {
    /// Every status, in wire order.
    pub const ALL: [Status; 9] = [
        Self::Ok,
        Self::InvalidInput,
        Self::NotFound,
        Self::Busy,
        Self::Timeout,
        Self::Cancelled,
        Self::InternalError,
        Self::ProtocolError,
        Self::Unavailable,
    ];

    /// The status with this wire value, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// The status's name as the docs and the Python client spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "Ok",
            Self::InvalidInput => "InvalidInput",
            Self::NotFound => "NotFound",
            Self::Busy => "Busy",
            Self::Timeout => "Timeout",
            Self::Cancelled => "Cancelled",
            Self::InternalError => "InternalError",
            Self::ProtocolError => "ProtocolError",
            Self::Unavailable => "Unavailable",
        }
    }
}

/// Flag bit 0: the call may safely run twice (a client may re-send it after a worker restart).
pub const FLAG_IDEMPOTENT: u32 = 1;
/// Every flag bit v1 defines; any other bit set is a protocol error.
pub const KNOWN_FLAGS: u32 = FLAG_IDEMPOTENT;

/// Per-reply timings the worker fills in.
///
/// ```
/// use molt_ipc_ring::frame::Metrics;
/// let m = Metrics { queue_us: 3, exec_us: 40, queue_depth: 1 };
/// assert_eq!(m.queue_us + m.exec_us, 43);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Microseconds from the call's arrival to the start of its execution.
    pub queue_us: u32,
    /// Microseconds spent executing.
    pub exec_us: u32,
    /// Admission queue depth when the call arrived.
    pub queue_depth: u32,
}

/// A decoded frame, borrowing its entry name and payload from the buffer it came from.
///
/// Build one with [`Frame::call`], [`Frame::reply`], [`Frame::cancel`], [`Frame::ping`] or
/// [`Frame::pong`]; encode it with [`Frame::encode_into`].
///
/// ```
/// use molt_ipc_ring::frame::{Frame, Kind};
/// let ping = Frame::ping(42);
/// assert_eq!(ping.kind, Kind::Ping);
/// assert_eq!(ping.encoded_len(), 48);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame is for.
    pub kind: Kind,
    /// How the payload is encoded.
    pub codec: Codec,
    /// The outcome (replies only; `Ok` otherwise).
    pub status: Status,
    /// Flag bits, a subset of [`KNOWN_FLAGS`].
    pub flags: u32,
    /// Chosen by the client; a reply or pong carries its request's id back.
    pub request_id: u64,
    /// Absolute `CLOCK_MONOTONIC` deadline in nanoseconds (calls; 0 means none).
    pub deadline_ns: u64,
    /// Timings (replies; zero otherwise).
    pub metrics: Metrics,
    /// Entry name (calls only; empty otherwise).
    pub entry: &'a str,
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    fn bare(kind: Kind, request_id: u64) -> Self {
        Self {
            kind,
            codec: Codec::Raw,
            status: Status::Ok,
            flags: 0,
            request_id,
            deadline_ns: 0,
            metrics: Metrics::default(),
            entry: "",
            payload: &[],
        }
    }

    /// A call of `entry` with `payload` encoded as `codec`, without deadline or flags.
    pub fn call(request_id: u64, entry: &'a str, codec: Codec, payload: &'a [u8]) -> Self {
        Self {
            codec,
            entry,
            payload,
            ..Self::bare(Kind::Call, request_id)
        }
    }

    /// A reply with `status`; error replies carry a [`Codec::Raw`] UTF-8 message.
    pub fn reply(request_id: u64, status: Status, codec: Codec, payload: &'a [u8]) -> Self {
        Self {
            codec,
            status,
            payload,
            ..Self::bare(Kind::Reply, request_id)
        }
    }

    /// A cancel of the call `request_id`.
    pub fn cancel(request_id: u64) -> Self {
        Self::bare(Kind::Cancel, request_id)
    }

    /// A ping.
    pub fn ping(request_id: u64) -> Self {
        Self::bare(Kind::Ping, request_id)
    }

    /// The pong answering ping `request_id`.
    pub fn pong(request_id: u64) -> Self {
        Self::bare(Kind::Pong, request_id)
    }

    /// This frame with an absolute deadline.
    pub fn with_deadline_ns(self, deadline_ns: u64) -> Self {
        Self {
            deadline_ns,
            ..self
        }
    }

    /// This frame with flag bits.
    pub fn with_flags(self, flags: u32) -> Self {
        Self { flags, ..self }
    }

    /// This frame with reply metrics.
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// Whether the idempotent flag is set.
    pub fn is_idempotent(&self) -> bool {
        self.flags & FLAG_IDEMPOTENT != 0
    }

    /// Size of the encoded frame in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.entry.len() + self.payload.len()
    }

    /// Writes the header for this frame into `out`.
    ///
    /// # Panics
    ///
    /// If the entry name is longer than [`MAX_ENTRY_LEN`] or the payload longer than
    /// `u32::MAX`: both are caller bugs, never peer input.
    pub fn write_header(&self, out: &mut [u8; HEADER_LEN]) {
        assert!(
            self.entry.len() <= MAX_ENTRY_LEN,
            "entry name longer than {MAX_ENTRY_LEN} bytes"
        );
        let payload_len = u32::try_from(self.payload.len()).expect("payload longer than u32::MAX");
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[KIND_OFFSET] = self.kind as u8;
        out[6] = self.codec as u8;
        out[7] = self.status as u8;
        out[8..12].copy_from_slice(&self.flags.to_le_bytes());
        out[12..14].copy_from_slice(&(self.entry.len() as u16).to_le_bytes());
        out[14..16].copy_from_slice(&0u16.to_le_bytes());
        out[16..24].copy_from_slice(&self.request_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.deadline_ns.to_le_bytes());
        out[32..36].copy_from_slice(&self.metrics.queue_us.to_le_bytes());
        out[36..40].copy_from_slice(&self.metrics.exec_us.to_le_bytes());
        out[40..44].copy_from_slice(&self.metrics.queue_depth.to_le_bytes());
        out[44..48].copy_from_slice(&payload_len.to_le_bytes());
    }

    /// Appends the encoded frame to `out`.
    ///
    /// # Panics
    ///
    /// As [`Frame::write_header`].
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut header = [0u8; HEADER_LEN];
        self.write_header(&mut header);
        out.reserve(self.encoded_len());
        out.extend_from_slice(&header);
        out.extend_from_slice(self.entry.as_bytes());
        out.extend_from_slice(self.payload);
    }

    /// The encoded frame as a new vector.
    ///
    /// # Panics
    ///
    /// As [`Frame::write_header`].
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }
}

/// Why a buffer is not a valid v1 frame.
///
/// ```
/// use molt_ipc_ring::frame::{decode, DecodeError};
/// assert_eq!(decode(b"MOLT", 1 << 20), Err(DecodeError::Truncated { len: 4 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Larger than the configured maximum.
    TooLarge {
        /// Size of the frame (or of what its header declares).
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Does not start with `"MOLT"`.
    BadMagic,
    /// A version this decoder does not speak.
    BadVersion(u8),
    /// `entry_len` and `payload_len` do not add up to the frame's size.
    LengthMismatch {
        /// Size the header declares (header + entry + payload).
        declared: u64,
        /// Size of the frame as delimited by the transport.
        actual: usize,
    },
    /// The framing is sound but a field is not understood; the request can be answered.
    Invalid {
        /// The request id the frame carries.
        request_id: u64,
        /// What is wrong.
        reason: InvalidField,
    },
}

/// Which field of an otherwise well-framed frame is not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidField {
    /// Unknown kind value.
    Kind(u8),
    /// Unknown codec value.
    Codec(u8),
    /// Unknown status value.
    Status(u8),
    /// Flag bits v1 does not define.
    Flags(u32),
    /// Reserved bytes are not zero.
    Reserved(u16),
    /// A call's entry name is longer than [`MAX_ENTRY_LEN`].
    EntryTooLong(u16),
    /// A frame other than a call carries an entry name.
    UnexpectedEntry(u16),
    /// The entry name is not UTF-8.
    EntryNotUtf8,
}

impl DecodeError {
    /// The request id to answer with `ProtocolError`, when the frame's framing is intact;
    /// `None` when the stream itself cannot be trusted any more.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::Invalid { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => {
                write!(f, "truncated frame: {len} bytes, header needs {HEADER_LEN}")
            }
            Self::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            Self::BadMagic => f.write_str("bad magic: not a molt frame"),
            Self::BadVersion(v) => write!(
                f,
                "unsupported protocol version {v} (this peer speaks {VERSION})"
            ),
            Self::LengthMismatch { declared, actual } => {
                write!(
                    f,
                    "header declares {declared} bytes but the frame has {actual}"
                )
            }
            Self::Invalid { reason, .. } => fmt::Display::fmt(reason, f),
        }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kind(v) => write!(f, "unknown frame kind {v}"),
            Self::Codec(v) => write!(f, "unknown codec {v}"),
            Self::Status(v) => write!(f, "unknown status {v}"),
            Self::Flags(v) => write!(f, "unknown flag bits {v:#x}"),
            Self::Reserved(v) => write!(f, "reserved field must be 0, got {v}"),
            Self::EntryTooLong(n) => write!(f, "entry name of {n} bytes exceeds {MAX_ENTRY_LEN}"),
            Self::UnexpectedEntry(n) => write!(f, "only calls carry an entry name (entry_len {n})"),
            Self::EntryNotUtf8 => f.write_str("entry name is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The total frame size a header declares (header + entry + payload), after checking magic
/// and version. Stream transports use it to know how much more to read.
///
/// ```
/// use molt_ipc_ring::frame::{declared_len, Codec, Frame};
/// let bytes = Frame::call(1, "echo", Codec::Raw, b"abc").encode_to_vec();
/// assert_eq!(declared_len(&bytes), Ok(bytes.len() as u64));
/// ```
pub fn declared_len(buf: &[u8]) -> Result<u64, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { len: buf.len() });
    }
    if buf[0..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if buf[4] != VERSION {
        return Err(DecodeError::BadVersion(buf[4]));
    }
    // u64 arithmetic: a u16 and a u32 length plus 48 cannot overflow it.
    let entry_len = u64::from(u16_at(buf, ENTRY_LEN_OFFSET));
    Ok(HEADER_LEN as u64 + entry_len + u64::from(u32_at(buf, PAYLOAD_LEN_OFFSET)))
}

/// The `(request_id, deadline_ns)` of a frame, read at their fixed offsets without decoding
/// anything else; `None` if `buf` is shorter than a header. Lets a ring consumer drop an
/// expired call straight from its slot.
///
/// ```
/// use molt_ipc_ring::frame::{peek_deadline, Codec, Frame};
/// let bytes = Frame::call(9, "echo", Codec::Raw, b"").with_deadline_ns(77).encode_to_vec();
/// assert_eq!(peek_deadline(&bytes), Some((9, 77)));
/// ```
pub fn peek_deadline(buf: &[u8]) -> Option<(u64, u64)> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some((u64_at(buf, REQUEST_ID_OFFSET), u64_at(buf, DEADLINE_OFFSET)))
}

/// Decodes one whole frame: `buf` is exactly the frame, as delimited by the transport.
///
/// Checks, in order: size against `max_frame_bytes`, header present, magic, version, that
/// the declared lengths add up to `buf.len()`, then every field. Never panics.
///
/// ```
/// use molt_ipc_ring::frame::{decode, DecodeError, Frame};
/// let mut bytes = Frame::ping(5).encode_to_vec();
/// bytes[5] = 42; // an unknown kind: answerable, the framing is intact
/// assert_eq!(decode(&bytes, 1024).unwrap_err().request_id(), Some(5));
/// ```
pub fn decode(buf: &[u8], max_frame_bytes: usize) -> Result<Frame<'_>, DecodeError> {
    if buf.len() > max_frame_bytes {
        return Err(DecodeError::TooLarge {
            len: buf.len(),
            max: max_frame_bytes,
        });
    }
    let declared = declared_len(buf)?;
    if declared != buf.len() as u64 {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: buf.len(),
        });
    }
    let request_id = u64_at(buf, REQUEST_ID_OFFSET);
    let invalid = |reason| DecodeError::Invalid { request_id, reason };
    let kind =
        Kind::from_u8(buf[KIND_OFFSET]).ok_or(invalid(InvalidField::Kind(buf[KIND_OFFSET])))?;
    let codec = Codec::from_u8(buf[6]).ok_or(invalid(InvalidField::Codec(buf[6])))?;
    let status = Status::from_u8(buf[7]).ok_or(invalid(InvalidField::Status(buf[7])))?;
    let flags = u32_at(buf, 8);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(invalid(InvalidField::Flags(flags)));
    }
    let entry_len = u16_at(buf, ENTRY_LEN_OFFSET);
    let reserved = u16_at(buf, 14);
    if reserved != 0 {
        return Err(invalid(InvalidField::Reserved(reserved)));
    }
    if kind != Kind::Call && entry_len != 0 {
        return Err(invalid(InvalidField::UnexpectedEntry(entry_len)));
    }
    if usize::from(entry_len) > MAX_ENTRY_LEN {
        return Err(invalid(InvalidField::EntryTooLong(entry_len)));
    }
    // The lengths were checked to add up to buf.len() above, so both slices are in bounds.
    let (entry_bytes, payload) = buf[HEADER_LEN..].split_at(usize::from(entry_len));
    let entry =
        core::str::from_utf8(entry_bytes).map_err(|_| invalid(InvalidField::EntryNotUtf8))?;
    Ok(Frame {
        kind,
        codec,
        status,
        flags,
        request_id,
        deadline_ns: u64_at(buf, DEADLINE_OFFSET),
        metrics: Metrics {
            queue_us: u32_at(buf, 32),
            exec_us: u32_at(buf, 36),
            queue_depth: u32_at(buf, 40),
        },
        entry,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_call_with_every_field() {
        let frame = Frame::call(u64::MAX, "list_items", Codec::MsgPack, &[1, 2, 3])
            .with_deadline_ns(123_456_789)
            .with_flags(FLAG_IDEMPOTENT);
        let bytes = frame.encode_to_vec();
        assert_eq!(bytes.len(), frame.encoded_len());
        assert_eq!(decode(&bytes, DEFAULT_MAX_FRAME_BYTES), Ok(frame));
    }

    #[test]
    fn rejects_a_frame_over_the_maximum_before_reading_it() {
        let bytes = Frame::call(1, "echo", Codec::Raw, &[0; 100]).encode_to_vec();
        assert_eq!(
            decode(&bytes, 64),
            Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: 64
            })
        );
    }

    #[test]
    fn length_mismatch_is_not_answerable() {
        let mut bytes = Frame::call(3, "echo", Codec::Raw, b"abc").encode_to_vec();
        bytes.pop();
        let err = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(err, DecodeError::LengthMismatch { .. }));
        assert_eq!(err.request_id(), None);
    }

    #[test]
    fn unknown_flags_are_answerable() {
        let mut bytes = Frame::call(11, "echo", Codec::Raw, b"").encode_to_vec();
        bytes[8] = 0b10;
        let err = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Invalid {
                request_id: 11,
                reason: InvalidField::Flags(2)
            }
        );
    }

    #[test]
    fn only_calls_carry_an_entry() {
        let mut bytes = Frame::call(4, "x", Codec::Raw, b"").encode_to_vec();
        bytes[5] = Kind::Ping as u8;
        let err = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(err.request_id(), Some(4));
    }

    #[test]
    fn entry_names_over_255_bytes_are_refused() {
        let long = "e".repeat(300);
        let mut header = [0u8; HEADER_LEN];
        Frame::call(8, "", Codec::Raw, b"").write_header(&mut header);
        header[12..14].copy_from_slice(&300u16.to_le_bytes());
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(long.as_bytes());
        let err = decode(&bytes, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Invalid {
                request_id: 8,
                reason: InvalidField::EntryTooLong(300)
            }
        );
    }
}
