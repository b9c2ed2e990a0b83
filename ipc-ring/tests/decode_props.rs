//! Property tests of the frame decoder: whatever bytes arrive, it never panics, never reads
//! past the frame it was given, and round-trips every valid frame.

use molt_ipc_ring::frame::{
    self, Codec, DecodeError, Frame, Kind, Metrics, Status, DEFAULT_MAX_FRAME_BYTES,
    FLAG_IDEMPOTENT, HEADER_LEN, MAX_ENTRY_LEN,
};
use proptest::prelude::*;

/// An owned frame description, since `Frame` borrows its entry and payload.
#[derive(Clone, Debug)]
struct OwnedFrame {
    kind: Kind,
    codec: Codec,
    status: Status,
    flags: u32,
    request_id: u64,
    deadline_ns: u64,
    metrics: Metrics,
    entry: String,
    payload: Vec<u8>,
}

impl OwnedFrame {
    fn frame(&self) -> Frame<'_> {
        Frame {
            kind: self.kind,
            codec: self.codec,
            status: self.status,
            flags: self.flags,
            request_id: self.request_id,
            deadline_ns: self.deadline_ns,
            metrics: self.metrics,
            entry: &self.entry,
            payload: &self.payload,
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Call),
        Just(Kind::Reply),
        Just(Kind::Cancel),
        Just(Kind::Ping),
        Just(Kind::Pong)
    ]
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![
        Just(Codec::Raw),
        Just(Codec::MsgPack),
        Just(Codec::Json),
        Just(Codec::ArrowIpc)
    ]
}

/// Entry names of any UTF-8 (multi-byte included) that fit in MAX_ENTRY_LEN bytes.
fn entry_name() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|mut name| {
        while name.len() > MAX_ENTRY_LEN {
            name.pop();
        }
        name
    })
}

fn valid_frame() -> impl Strategy<Value = OwnedFrame> {
    (
        kind(),
        codec(),
        prop::sample::select(Status::ALL.to_vec()),
        prop::bool::ANY,
        any::<u64>(),
        any::<u64>(),
        any::<(u32, u32, u32)>(),
        entry_name(),
        prop::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(
            |(
                kind,
                codec,
                status,
                idempotent,
                request_id,
                deadline_ns,
                (q, e, d),
                entry,
                payload,
            )| OwnedFrame {
                kind,
                codec,
                status,
                flags: if idempotent { FLAG_IDEMPOTENT } else { 0 },
                request_id,
                deadline_ns,
                metrics: Metrics {
                    queue_us: q,
                    exec_us: e,
                    queue_depth: d,
                },
                entry: if kind == Kind::Call {
                    entry
                } else {
                    String::new()
                },
                payload,
            },
        )
}

/// A decoded frame must be exactly the bytes it came from: re-encoding it gives them back,
/// so nothing outside the buffer was read and nothing inside it was skipped.
fn assert_canonical(bytes: &[u8], decoded: &Frame<'_>) {
    assert_eq!(decoded.encoded_len(), bytes.len());
    assert_eq!(decoded.encode_to_vec(), bytes);
}

proptest! {
    // No failure persistence: regressions are written up as named tests instead.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn valid_frames_round_trip(owned in valid_frame()) {
        let frame = owned.frame();
        let bytes = frame.encode_to_vec();
        prop_assert_eq!(frame::decode(&bytes, DEFAULT_MAX_FRAME_BYTES), Ok(frame));
        prop_assert_eq!(frame::declared_len(&bytes), Ok(bytes.len() as u64));
        prop_assert_eq!(frame::peek_deadline(&bytes), Some((owned.request_id, owned.deadline_ns)));
    }

    #[test]
    fn garbage_never_panics_and_what_decodes_is_canonical(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(decoded) = frame::decode(&bytes, DEFAULT_MAX_FRAME_BYTES) {
            assert_canonical(&bytes, &decoded);
        }
        let _ = frame::declared_len(&bytes);
        prop_assert_eq!(frame::peek_deadline(&bytes).is_some(), bytes.len() >= HEADER_LEN);
    }

    #[test]
    fn garbage_after_a_valid_magic_and_version_never_panics(tail in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = b"MOLT\x01".to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(decoded) = frame::decode(&bytes, DEFAULT_MAX_FRAME_BYTES) {
            assert_canonical(&bytes, &decoded);
        }
    }

    #[test]
    fn every_truncation_of_a_valid_frame_is_refused(owned in valid_frame(), cut in any::<prop::sample::Index>()) {
        let bytes = owned.frame().encode_to_vec();
        let len = cut.index(bytes.len());
        let err = frame::decode(&bytes[..len], DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        prop_assert_eq!(err.request_id(), None, "a truncated frame cannot be answered: {:?}", err);
    }

    #[test]
    fn a_frame_over_the_maximum_is_refused_before_anything_else(owned in valid_frame(), below in any::<prop::sample::Index>()) {
        let bytes = owned.frame().encode_to_vec();
        let max = below.index(bytes.len());
        prop_assert_eq!(
            frame::decode(&bytes, max),
            Err(DecodeError::TooLarge { len: bytes.len(), max })
        );
    }

    #[test]
    fn mutated_frames_never_panic_and_what_decodes_is_canonical(
        owned in valid_frame(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut bytes = owned.frame().encode_to_vec();
        let at = at.index(bytes.len());
        bytes[at] = value;
        match frame::decode(&bytes, DEFAULT_MAX_FRAME_BYTES) {
            Ok(decoded) => assert_canonical(&bytes, &decoded),
            Err(DecodeError::Invalid { request_id, .. }) => {
                // Answerable errors carry the id at its fixed offset, as a reply must.
                prop_assert_eq!(Some(request_id), frame::peek_deadline(&bytes).map(|(id, _)| id));
            }
            Err(_) => {}
        }
    }

    #[test]
    fn a_frame_inside_a_larger_buffer_decodes_only_its_own_bytes(owned in valid_frame(), trailer in prop::collection::vec(any::<u8>(), 1..64)) {
        let frame_bytes = owned.frame().encode_to_vec();
        let mut buffer = frame_bytes.clone();
        buffer.extend_from_slice(&trailer);
        let decoded = frame::decode(&buffer[..frame_bytes.len()], DEFAULT_MAX_FRAME_BYTES).unwrap();
        assert_canonical(&frame_bytes, &decoded);
        // The whole buffer no longer matches its header: a stream transport must not guess.
        prop_assert!(
            matches!(
                frame::decode(&buffer, DEFAULT_MAX_FRAME_BYTES),
                Err(DecodeError::LengthMismatch { .. })
            ),
            "trailing bytes must be refused"
        );
    }
}
