//! The hex vectors of `docs/protocol.md`, read from the doc itself, both ways.

use molt_ipc_ring::frame::{
    decode, Codec, Frame, Metrics, Status, DEFAULT_MAX_FRAME_BYTES, FLAG_IDEMPOTENT,
};

const PROTOCOL_MD: &str = include_str!("../../docs/protocol.md");

fn vector(name: &str) -> Vec<u8> {
    let fence = format!("```vector {name}");
    let start = PROTOCOL_MD
        .find(&fence)
        .unwrap_or_else(|| panic!("no vector {name} in protocol.md"));
    let body = &PROTOCOL_MD[start + fence.len()..];
    let hex: String = body[..body.find("```").unwrap()]
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

const MSGPACK_X_1: &[u8] = &[0x81, 0xa1, 0x78, 0x01];

fn expected() -> Vec<(&'static str, Frame<'static>)> {
    vec![
        (
            "call",
            Frame::call(1, "echo", Codec::MsgPack, MSGPACK_X_1)
                .with_flags(FLAG_IDEMPOTENT)
                .with_deadline_ns(1_000_000_000),
        ),
        (
            "reply-ok",
            Frame::reply(1, Status::Ok, Codec::MsgPack, MSGPACK_X_1).with_metrics(Metrics {
                queue_us: 12,
                exec_us: 34,
                queue_depth: 2,
            }),
        ),
        (
            "reply-error",
            Frame::reply(2, Status::NotFound, Codec::Raw, b"unknown entry: nope"),
        ),
        ("cancel", Frame::cancel(1)),
        ("ping", Frame::ping(3)),
        ("pong", Frame::pong(3)),
    ]
}

#[test]
fn every_vector_encodes_to_the_documented_bytes() {
    for (name, frame) in expected() {
        assert_eq!(frame.encode_to_vec(), vector(name), "vector {name}");
    }
}

#[test]
fn every_vector_decodes_to_the_documented_frame() {
    for (name, frame) in expected() {
        let bytes = vector(name);
        assert_eq!(
            decode(&bytes, DEFAULT_MAX_FRAME_BYTES),
            Ok(frame),
            "vector {name}"
        );
    }
}
