//! What an entry takes and what it gives back.
//!
//! A call carries its payload in a codec the client chose (MsgPack, JSON, Raw, Arrow IPC). An
//! entry's request type says how it wants that payload ([`FromPayload`]): any serde type is
//! decoded in the call's codec; [`Payload`] is the bytes as they came. Its result says how it
//! is sent back ([`IntoReply`]): any serde type is encoded in the call's codec; a [`Reply`] is
//! bytes the entry encoded itself (pass-through, raw text, an Arrow stream).

use molt_ipc_ring::frame::Codec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::EntryError;

/// A call's payload, undecoded: its codec and its bytes. The request type of raw entries, and
/// what [`FromPayload`] implementations start from.
///
/// ```
/// use molt_worker::{Codec, Payload};
/// let payload = Payload::new(Codec::Raw, b"hi".to_vec());
/// assert_eq!((payload.codec(), payload.bytes()), (Codec::Raw, &b"hi"[..]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    codec: Codec,
    bytes: Vec<u8>,
}

impl Payload {
    /// A payload of `bytes` in `codec`.
    pub fn new(codec: Codec, bytes: Vec<u8>) -> Self {
        Self { codec, bytes }
    }

    /// The codec the client encoded the payload in.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The bytes, borrowed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, owned (no copy).
    ///
    /// ```
    /// use molt_worker::{Codec, Payload};
    /// assert_eq!(Payload::new(Codec::Json, b"{}".to_vec()).into_bytes(), b"{}");
    /// ```
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Decodes the payload as `T` in its codec (MsgPack or JSON). A payload that does not fit
    /// is [`EntryError::InvalidInput`] naming `entry` and the field at fault.
    ///
    /// ```
    /// use molt_worker::{Codec, EntryError, Payload};
    /// #[derive(serde::Deserialize)]
    /// struct Query { user_id: u64 }
    ///
    /// let ok = Payload::new(Codec::Json, br#"{"user_id": 7}"#.to_vec());
    /// assert_eq!(ok.decode::<Query>("lookup").unwrap().user_id, 7);
    /// let bad = Payload::new(Codec::Json, br#"{"user_id": "seven"}"#.to_vec());
    /// let Err(EntryError::InvalidInput(message)) = bad.decode::<Query>("lookup") else { panic!() };
    /// assert!(message.starts_with("invalid lookup payload: user_id: invalid type"), "{message}");
    /// ```
    pub fn decode<T: DeserializeOwned>(&self, entry: &str) -> Result<T, EntryError> {
        decode(entry, self.codec, &self.bytes)
    }
}

/// How an entry's request type is made from a call's payload. Implemented for every serde
/// type (decoded in the call's codec) and for [`Payload`] (the bytes as they came);
/// implement it for a type of your own to take another shape of payload (an Arrow table).
///
/// ```
/// use molt_worker::{Codec, EntryError, FromPayload, Payload};
///
/// /// A UTF-8 text in a raw payload.
/// struct Text(String);
///
/// impl FromPayload for Text {
///     fn from_payload(entry: &'static str, payload: Payload) -> Result<Self, EntryError> {
///         String::from_utf8(payload.into_bytes())
///             .map(Text)
///             .map_err(|_| EntryError::InvalidInput(format!("{entry} takes UTF-8 text")))
///     }
/// }
///
/// let text = Text::from_payload("shout", Payload::new(Codec::Raw, b"hi".to_vec())).unwrap();
/// assert_eq!(text.0, "hi");
/// ```
pub trait FromPayload: Sized {
    /// Makes the request of a call to `entry` from its payload; an error is the reply.
    fn from_payload(entry: &'static str, payload: Payload) -> Result<Self, EntryError>;
}

impl<T: DeserializeOwned> FromPayload for T {
    fn from_payload(entry: &'static str, payload: Payload) -> Result<Self, EntryError> {
        payload.decode(entry)
    }
}

impl FromPayload for Payload {
    fn from_payload(_entry: &'static str, payload: Payload) -> Result<Self, EntryError> {
        Ok(payload)
    }
}

/// Bytes an entry encoded itself, and the codec to send them in.
///
/// ```
/// use molt_worker::{Codec, Reply};
/// let text = Reply::raw(b"# TYPE x counter".to_vec());
/// assert_eq!(text.codec_for(Codec::MsgPack), Codec::Raw);
/// let passed_through = Reply::encoded(br#"{"id": 1}"#.to_vec());
/// assert_eq!(passed_through.codec_for(Codec::Json), Codec::Json);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// `None`: the call's own codec.
    codec: Option<Codec>,
    bytes: Vec<u8>,
}

impl Reply {
    /// Bytes already encoded in the call's own codec, sent as they are (pass-through: JSON
    /// that becomes an HTTP body unchanged, a cached MsgPack answer).
    pub fn encoded(bytes: Vec<u8>) -> Self {
        Self { codec: None, bytes }
    }

    /// Opaque bytes in the Raw codec, whatever the call's codec.
    pub fn raw(bytes: Vec<u8>) -> Self {
        Self::with_codec(Codec::Raw, bytes)
    }

    /// Bytes in `codec`, whatever the call's codec (an Arrow IPC stream, say).
    pub fn with_codec(codec: Codec, bytes: Vec<u8>) -> Self {
        Self {
            codec: Some(codec),
            bytes,
        }
    }

    /// The codec these bytes go out in, for a call made in `call_codec`.
    pub fn codec_for(&self, call_codec: Codec) -> Codec {
        self.codec.unwrap_or(call_codec)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The codec these bytes go out in, for a call made in `call_codec`, and the bytes
    /// (no copy).
    ///
    /// ```
    /// use molt_worker::{Codec, Reply};
    /// let (codec, bytes) = Reply::encoded(b"[1]".to_vec()).into_parts(Codec::Json);
    /// assert_eq!((codec, &bytes[..]), (Codec::Json, &b"[1]"[..]));
    /// ```
    pub fn into_parts(self, call_codec: Codec) -> (Codec, Vec<u8>) {
        (self.codec.unwrap_or(call_codec), self.bytes)
    }
}

/// How an entry's result becomes the reply's payload. Implemented for every serde type
/// (encoded in the call's codec; MsgPack maps keep field names and order; JSON as Python's
/// `json.dumps` writes it, see [`json`](crate::json)) and for [`Reply`].
///
/// ```
/// use molt_worker::{Codec, IntoReply};
/// #[derive(serde::Serialize)]
/// struct Row { id: u32, title: &'static str }
///
/// let reply = Row { id: 1, title: "a" }.into_reply(Codec::Json).unwrap();
/// assert_eq!(reply.bytes(), br#"{"id": 1, "title": "a"}"#);
/// ```
pub trait IntoReply {
    /// Encodes the result of a call made in `call_codec`.
    fn into_reply(self, call_codec: Codec) -> Result<Reply, EntryError>;
}

impl<T: Serialize> IntoReply for T {
    fn into_reply(self, call_codec: Codec) -> Result<Reply, EntryError> {
        encode(call_codec, &self).map(Reply::encoded)
    }
}

impl IntoReply for Reply {
    fn into_reply(self, _call_codec: Codec) -> Result<Reply, EntryError> {
        Ok(self)
    }
}

/// Deepest nesting a MsgPack payload may have: serde_json's own recursion limit, so both codecs
/// refuse the same shapes. rmp-serde's default (1024) let a 1 KB payload of nested arrays
/// overflow a compute thread's stack in a debug build, which aborts the whole worker.
const MAX_NESTING: usize = 128;

/// Decodes a structured payload, naming the field at fault (`serde_path_to_error`: serde's
/// own messages say what was wrong but not where). Raw and Arrow payloads are refused.
fn decode<T: DeserializeOwned>(entry: &str, codec: Codec, bytes: &[u8]) -> Result<T, EntryError> {
    let invalid =
        |detail: String| EntryError::InvalidInput(format!("invalid {entry} payload: {detail}"));
    match codec {
        Codec::MsgPack => {
            let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
            deserializer.set_max_depth(MAX_NESTING);
            serde_path_to_error::deserialize(&mut deserializer).map_err(|e| invalid(located(&e)))
        }
        Codec::Json => {
            let mut deserializer = serde_json::Deserializer::from_slice(bytes);
            let value: T = serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|e| invalid(located(&e)))?;
            deserializer.end().map_err(|e| invalid(e.to_string()))?;
            Ok(value)
        }
        Codec::Raw | Codec::ArrowIpc => Err(EntryError::InvalidInput(format!(
            "{entry} takes a msgpack or json payload"
        ))),
    }
}

/// "field.sub: what was wrong", or just what was wrong when it concerns the whole payload.
fn located<E: std::fmt::Display>(error: &serde_path_to_error::Error<E>) -> String {
    let path = error.path().to_string();
    if path == "." {
        error.inner().to_string()
    } else {
        format!("{path}: {}", error.inner())
    }
}

/// Encodes a structured result in the call's codec.
fn encode<T: Serialize>(codec: Codec, value: &T) -> Result<Vec<u8>, EntryError> {
    match codec {
        Codec::MsgPack => {
            rmp_serde::to_vec_named(value).map_err(|e| EntryError::Internal(e.to_string()))
        }
        Codec::Json => crate::json::to_vec(value).map_err(|e| EntryError::Internal(e.to_string())),
        Codec::Raw | Codec::ArrowIpc => Err(EntryError::InvalidInput(
            "this entry replies in msgpack or json: set the call's codec to one of them".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload nested far deeper than any entry takes, in both codecs.
    fn nested(codec: Codec, depth: usize) -> Vec<u8> {
        match codec {
            Codec::MsgPack => [vec![0x91; depth], vec![0x01]].concat(),
            _ => [vec![b'['; depth], vec![b'1'], vec![b']'; depth]].concat(),
        }
    }

    #[test]
    fn deep_nesting_is_invalid_input_not_a_stack_overflow() {
        for codec in [Codec::MsgPack, Codec::Json] {
            let result = decode::<serde_json::Value>("compute", codec, &nested(codec, 100_000));
            assert!(
                matches!(result, Err(EntryError::InvalidInput(_))),
                "{codec:?}: {result:?}"
            );
        }
    }

    #[test]
    fn nesting_up_to_the_limit_decodes() {
        let value: serde_json::Value = decode(
            "compute",
            Codec::MsgPack,
            &nested(Codec::MsgPack, MAX_NESTING - 1),
        )
        .unwrap();
        assert!(value.is_array());
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        outer: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        limit: u32,
    }

    #[test]
    fn a_bad_field_is_named_in_both_codecs() {
        let json = br#"{"outer": {"limit": -1}}"#;
        let msgpack =
            rmp_serde::to_vec_named(&serde_json::json!({"outer": {"limit": -1}})).unwrap();
        for (codec, bytes) in [(Codec::Json, &json[..]), (Codec::MsgPack, &msgpack[..])] {
            let Err(EntryError::InvalidInput(message)) = decode::<Nested>("e", codec, bytes) else {
                panic!("{codec:?} decoded");
            };
            assert!(
                message.starts_with("invalid e payload: outer.limit: "),
                "{codec:?}: {message}"
            );
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        let Err(EntryError::InvalidInput(message)) = decode::<Inner>("e", Codec::Json, b"{}")
        else {
            panic!("decoded");
        };
        assert_eq!(
            message,
            "invalid e payload: missing field `limit` at line 1 column 2"
        );
    }

    #[test]
    fn trailing_json_is_refused() {
        assert!(decode::<Inner>("e", Codec::Json, br#"{"limit": 1} x"#).is_err());
    }

    #[test]
    fn a_serde_result_in_raw_is_the_callers_error() {
        assert!(matches!(
            7u8.into_reply(Codec::Raw),
            Err(EntryError::InvalidInput(_))
        ));
    }
}
