//! Payload codecs for entries that take structured input: MsgPack and JSON.

use molt_ipc_ring::frame::Codec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{EntryError, EntryResult};

/// Decodes a structured payload. Raw and Arrow payloads are refused with InvalidInput.
pub fn decode<T: DeserializeOwned>(entry: &str, codec: Codec, bytes: &[u8]) -> Result<T, EntryError> {
    match codec {
        Codec::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| invalid(entry, &e.to_string())),
        Codec::Json => serde_json::from_slice(bytes).map_err(|e| invalid(entry, &e.to_string())),
        Codec::Raw | Codec::ArrowIpc => Err(EntryError::InvalidInput(format!(
            "{entry} takes a msgpack or json payload"
        ))),
    }
}

/// Encodes a structured result in the call's codec. MsgPack maps keep field names and order.
pub fn encode<T: Serialize>(codec: Codec, value: &T) -> EntryResult {
    match codec {
        Codec::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| EntryError::Internal(e.to_string())),
        Codec::Json => serde_json::to_vec(value).map_err(|e| EntryError::Internal(e.to_string())),
        Codec::Raw | Codec::ArrowIpc => Err(EntryError::Internal("unsupported result codec".into())),
    }
}

fn invalid(entry: &str, detail: &str) -> EntryError {
    EntryError::InvalidInput(format!("invalid {entry} payload: {detail}"))
}
