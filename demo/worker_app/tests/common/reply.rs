//! Replies as a client reads them, owned so they outlive the buffer they were decoded from.
// Shared by several test binaries, each of which uses a part.
#![allow(dead_code)]

use molt_ipc_ring::frame::{self, Codec, Kind, Metrics, Status};
use serde_json::Value;

/// An owned reply.
#[derive(Debug)]
pub struct Reply {
    pub kind: Kind,
    pub request_id: u64,
    pub status: Status,
    pub codec: Codec,
    pub metrics: Metrics,
    pub payload: Vec<u8>,
}

impl Reply {
    /// Decodes a frame the worker wrote; the worker writes only valid frames.
    pub fn decode(bytes: &[u8]) -> Self {
        let frame = frame::decode(bytes, usize::MAX).expect("the worker writes valid frames");
        Self {
            kind: frame.kind,
            request_id: frame.request_id,
            status: frame.status,
            codec: frame.codec,
            metrics: frame.metrics,
            payload: frame.payload.to_vec(),
        }
    }

    /// The payload of an error reply.
    pub fn message(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("error messages are UTF-8")
    }
}

/// `value` as a MsgPack payload with named map keys, as the Python client encodes it.
pub fn msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}
