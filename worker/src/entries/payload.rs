//! Payload codecs for entries that take structured input: MsgPack and JSON.

use molt_ipc_ring::frame::Codec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{EntryError, EntryResult};

/// Decodes a structured payload. Raw and Arrow payloads are refused with InvalidInput.
pub fn decode<T: DeserializeOwned>(
    entry: &str,
    codec: Codec,
    bytes: &[u8],
) -> Result<T, EntryError> {
    match codec {
        Codec::MsgPack => decode_msgpack(bytes).map_err(|e| invalid(entry, &e.to_string())),
        Codec::Json => serde_json::from_slice(bytes).map_err(|e| invalid(entry, &e.to_string())),
        Codec::Raw | Codec::ArrowIpc => Err(EntryError::InvalidInput(format!(
            "{entry} takes a msgpack or json payload"
        ))),
    }
}

/// Deepest nesting a MsgPack payload may have: serde_json's own recursion limit, so both codecs
/// refuse the same shapes. rmp-serde's default (1024) let a 1 KB payload of nested arrays
/// overflow a compute thread's stack in a debug build, which aborts the whole worker.
const MAX_NESTING: usize = 128;

fn decode_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    deserializer.set_max_depth(MAX_NESTING);
    T::deserialize(&mut deserializer)
}

/// Encodes a structured result in the call's codec. MsgPack maps keep field names and order.
pub fn encode<T: Serialize>(codec: Codec, value: &T) -> EntryResult {
    match codec {
        Codec::MsgPack => {
            rmp_serde::to_vec_named(value).map_err(|e| EntryError::Internal(e.to_string()))
        }
        Codec::Json => serde_json::to_vec(value).map_err(|e| EntryError::Internal(e.to_string())),
        Codec::Raw | Codec::ArrowIpc => {
            Err(EntryError::Internal("unsupported result codec".into()))
        }
    }
}

fn invalid(entry: &str, detail: &str) -> EntryError {
    EntryError::InvalidInput(format!("invalid {entry} payload: {detail}"))
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
}
