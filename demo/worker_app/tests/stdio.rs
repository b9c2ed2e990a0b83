//! Drives the real `molt_worker` binary through real pipes, as a client would.

mod common {
    pub mod process;
    pub mod reply;
    pub mod stdio_frames;
    pub mod stdio_worker;
}

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use molt_ipc_ring::frame::{Codec, Frame, Kind, Status, DEFAULT_MAX_FRAME_BYTES};
use molt_ipc_ring::platform::clock::monotonic_now_ns;
use serde_json::{json, Value};

use common::process::{repo_file, send_signal, wait_for_exit};
use common::reply::{msgpack, Reply};
use common::stdio_frames::{read_frame, write_frame};
use common::stdio_worker::Worker;

fn from_msgpack(bytes: &[u8]) -> Value {
    rmp_serde::from_slice(bytes).unwrap()
}

/// Asserts that each id got exactly one reply, and returns the statuses by id.
fn one_reply_each(replies: &[Reply], ids: &[u64]) -> HashMap<u64, Status> {
    let mut statuses = HashMap::new();
    for reply in replies {
        assert_eq!(reply.kind, Kind::Reply);
        assert!(
            statuses.insert(reply.request_id, reply.status).is_none(),
            "two replies for {}",
            reply.request_id
        );
    }
    let mut got: Vec<u64> = statuses.keys().copied().collect();
    got.sort_unstable();
    assert_eq!(got, ids, "exactly the calls sent get replies");
    statuses
}

#[test]
fn ping_gets_a_pong_with_the_same_request_id() {
    let mut worker = Worker::test_manifest(&[]);
    worker.send(&Frame::ping(77));
    let pong = worker.recv();
    assert_eq!(
        (pong.kind, pong.request_id, pong.status),
        (Kind::Pong, 77, Status::Ok)
    );
    let (status, rest, _) = worker.finish();
    assert!(status.success());
    assert!(rest.is_empty());
}

#[test]
fn echo_returns_the_payload_unchanged_in_every_codec() {
    let mut worker = Worker::test_manifest(&[]);
    let payload: Vec<u8> = (0..=255).collect();
    for (id, codec) in [
        (1, Codec::Raw),
        (2, Codec::MsgPack),
        (3, Codec::Json),
        (4, Codec::ArrowIpc),
    ] {
        worker.call(id, "echo", codec, &payload);
        let reply = worker.recv();
        assert_eq!(
            (reply.request_id, reply.status, reply.codec),
            (id, Status::Ok, codec)
        );
        assert_eq!(reply.payload, payload);
    }
    assert!(worker.finish().1.is_empty());
}

#[test]
fn health_answers_in_the_calls_codec() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "health", Codec::Json, b"");
    let reply = worker.recv();
    assert_eq!((reply.status, reply.codec), (Status::Ok, Codec::Json));
    let report: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(report["status"], "ok");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    assert!(report["uptime_s"].is_u64());
    worker.call(2, "health", Codec::MsgPack, b"");
    assert_eq!(from_msgpack(&worker.recv().payload)["status"], "ok");
}

#[test]
fn health_with_a_raw_codec_is_invalid_input() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(5, "health", Codec::Raw, b"");
    let reply = worker.recv();
    assert_eq!(
        (reply.request_id, reply.status, reply.codec),
        (5, Status::InvalidInput, Codec::Raw)
    );
}

#[test]
fn list_items_with_a_user_id_returns_items() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(
        1,
        "list_items",
        Codec::MsgPack,
        &msgpack(&json!({"user_id": 7, "limit": 5})),
    );
    let reply = worker.recv();
    assert_eq!(
        (reply.status, reply.codec),
        (Status::Ok, Codec::MsgPack),
        "{:?}",
        reply
    );
    let result = from_msgpack(&reply.payload);
    assert_eq!(result["items"].as_array().map(Vec::len), Some(5));
}

#[test]
fn list_items_without_user_id_is_invalid_input_naming_the_field() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(2, "list_items", Codec::Json, br#"{"limit": 5}"#);
    let reply = worker.recv();
    assert_eq!(
        (reply.request_id, reply.status),
        (2, Status::InvalidInput),
        "{:?}",
        reply
    );
    assert!(reply.message().contains("user_id"), "{}", reply.message());
}

#[test]
fn an_unknown_entry_is_not_found() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(3, "nope", Codec::Raw, b"");
    let reply = worker.recv();
    assert_eq!(
        (reply.request_id, reply.status, reply.codec),
        (3, Status::NotFound, Codec::Raw)
    );
    assert_eq!(reply.message(), "unknown entry: nope");
}

#[test]
fn an_entry_the_manifest_does_not_enable_is_not_found() {
    let mut worker = Worker::start(&repo_file("molt_exports.json"), &[]);
    worker.call(4, "spin", Codec::Json, br#"{"ms": 1}"#);
    assert_eq!(worker.recv().status, Status::NotFound);
}

#[test]
fn an_undecodable_payload_is_invalid_input_naming_the_field() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(6, "sleep", Codec::Json, br#"{"ms": "long"}"#);
    let reply = worker.recv();
    assert_eq!(reply.status, Status::InvalidInput);
    assert!(reply.message().contains("sleep"), "{}", reply.message());
    worker.call(7, "sleep", Codec::Json, br#"{}"#);
    let reply = worker.recv();
    assert_eq!(reply.status, Status::InvalidInput);
    assert!(reply.message().contains("ms"), "{}", reply.message());
}

#[test]
fn an_unknown_codec_is_a_protocol_error_for_that_request_only() {
    let mut worker = Worker::test_manifest(&[]);
    let mut bytes = Frame::call(9, "echo", Codec::Raw, b"x").encode_to_vec();
    bytes[6] = 42;
    let mut prefixed = (bytes.len() as u32).to_le_bytes().to_vec();
    prefixed.extend_from_slice(&bytes);
    worker.send_raw(&prefixed);
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (9, Status::ProtocolError));
    worker.call(10, "echo", Codec::Raw, b"still here");
    assert_eq!(worker.recv().payload, b"still here");
    let (status, _, _) = worker.finish();
    assert!(status.success());
}

#[test]
fn a_request_id_already_in_flight_is_a_protocol_error() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "sleep", Codec::Json, br#"{"ms": 10000}"#);
    worker.call(1, "sleep", Codec::Json, br#"{"ms": 1}"#);
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (1, Status::ProtocolError));
    worker.send(&Frame::cancel(1));
    assert_eq!(worker.recv().status, Status::Cancelled);
}

#[test]
fn a_flood_of_spin_calls_gets_busy_once_the_queue_is_full() {
    let mut worker = Worker::test_manifest(&["--max-queue", "2", "--compute-threads", "1"]);
    let ids: Vec<u64> = (1..=8).collect();
    for &id in &ids {
        worker.call(id, "spin", Codec::Json, br#"{"ms": 20000}"#);
    }
    let busy = worker.replies_until_pong(1000);
    // One call runs (or is about to), two wait in the queue; the rest are refused at once.
    assert!(busy.len() >= ids.len() - 3, "{busy:?}");
    assert!(
        busy.iter().all(|reply| reply.status == Status::Busy),
        "{busy:?}"
    );
    let admitted: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| busy.iter().all(|r| r.request_id != *id))
        .collect();
    for &id in &admitted {
        worker.send(&Frame::cancel(id));
    }
    let cancelled: Vec<Reply> = admitted.iter().map(|_| worker.recv()).collect();
    assert!(
        cancelled
            .iter()
            .all(|reply| reply.status == Status::Cancelled),
        "{cancelled:?}"
    );
    let (status, rest, _) = worker.finish();
    assert!(status.success());
    let all: Vec<Reply> = busy.into_iter().chain(cancelled).chain(rest).collect();
    one_reply_each(&all, &ids);
}

#[test]
fn the_manifest_concurrency_limit_answers_busy() {
    let manifest =
        std::env::temp_dir().join(format!("molt_exports.limit.{}.json", std::process::id()));
    std::fs::write(
        &manifest,
        r#"{"entries": {"sleep": {"max_concurrency": 1}}}"#,
    )
    .unwrap();
    let mut worker = Worker::start(&manifest, &["--max-queue", "8"]);
    worker.call(1, "sleep", Codec::Json, br#"{"ms": 20000}"#);
    worker.call(2, "sleep", Codec::Json, br#"{"ms": 1}"#);
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (2, Status::Busy));
    worker.send(&Frame::cancel(1));
    assert_eq!(worker.recv().status, Status::Cancelled);
    std::fs::remove_file(manifest).unwrap();
}

#[test]
fn a_client_calling_one_at_a_time_never_hits_a_concurrency_limit_of_one() {
    let manifest = std::env::temp_dir().join(format!(
        "molt_exports.sequential.{}.json",
        std::process::id()
    ));
    std::fs::write(
        &manifest,
        r#"{"entries": {"sleep": {"max_concurrency": 1}}}"#,
    )
    .unwrap();
    let mut worker = Worker::start(&manifest, &[]);
    for id in 1..=50 {
        worker.call(id, "sleep", Codec::Json, br#"{"ms": 0}"#);
        let reply = worker.recv();
        assert_eq!(
            (reply.request_id, reply.status),
            (id, Status::Ok),
            "{}",
            reply.message()
        );
    }
    std::fs::remove_file(manifest).unwrap();
}

#[test]
fn the_farthest_deadline_the_wire_allows_is_accepted() {
    let mut worker = Worker::test_manifest(&[]);
    worker.send(&Frame::call(1, "sleep", Codec::Json, br#"{"ms": 1}"#).with_deadline_ns(u64::MAX));
    let reply = worker.recv();
    assert_eq!(
        (reply.request_id, reply.status),
        (1, Status::Ok),
        "{}",
        reply.message()
    );
    let (status, _, _) = worker.finish();
    assert!(status.success());
}

#[test]
fn sleep_past_its_deadline_times_out() {
    let mut worker = Worker::test_manifest(&[]);
    let deadline = monotonic_now_ns() + 50_000_000;
    worker.send(
        &Frame::call(1, "sleep", Codec::Json, br#"{"ms": 20000}"#).with_deadline_ns(deadline),
    );
    let reply = worker.recv();
    assert_eq!(
        (reply.request_id, reply.status, reply.codec),
        (1, Status::Timeout, Codec::Raw)
    );
    let (status, rest, _) = worker.finish();
    assert!(status.success());
    assert!(rest.is_empty(), "one reply only: {rest:?}");
}

#[test]
fn a_call_already_past_its_deadline_times_out_without_running() {
    let mut worker = Worker::test_manifest(&[]);
    worker.send(&Frame::call(1, "spin", Codec::Json, br#"{"ms": 20000}"#).with_deadline_ns(1));
    let reply = worker.recv();
    assert_eq!(reply.status, Status::Timeout);
    assert_eq!(reply.metrics.exec_us, 0);
}

#[test]
fn cancel_of_a_running_spin_replies_cancelled() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "spin", Codec::Json, br#"{"ms": 20000}"#);
    // Let it start; the reply is Cancelled whether or not it has.
    std::thread::sleep(Duration::from_millis(20));
    worker.send(&Frame::cancel(1));
    let reply = worker.recv();
    assert_eq!(
        (reply.request_id, reply.status, reply.codec),
        (1, Status::Cancelled, Codec::Raw)
    );
    // A second cancel of the same call is ignored.
    worker.send(&Frame::cancel(1));
    let (status, rest, _) = worker.finish();
    assert!(status.success());
    assert!(rest.is_empty(), "one reply only: {rest:?}");
}

#[test]
fn a_panic_in_an_entry_is_an_internal_error_and_the_worker_goes_on() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "panic", Codec::Raw, b"");
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (1, Status::InternalError));
    assert_eq!(reply.message(), "internal error");
    worker.call(2, "echo", Codec::Raw, b"alive");
    assert_eq!(worker.recv().payload, b"alive");
    let (status, rest, stderr) = worker.finish();
    assert!(status.success());
    assert!(rest.is_empty());
    assert!(
        stderr.contains("the panic entry was called"),
        "the panic is logged: {stderr}"
    );
}

#[test]
fn eof_with_calls_in_flight_answers_each_once_and_exits_zero() {
    let mut worker = Worker::test_manifest(&["--compute-threads", "1"]);
    worker.call(1, "spin", Codec::Json, br#"{"ms": 20000}"#);
    worker.call(2, "sleep", Codec::Json, br#"{"ms": 20000}"#);
    worker.call(3, "echo", Codec::Raw, b"e");
    let (status, rest, _) = worker.finish();
    assert_eq!(status.code(), Some(0));
    let statuses = one_reply_each(&rest, &[1, 2, 3]);
    assert_eq!(statuses[&1], Status::Cancelled);
    assert_eq!(statuses[&2], Status::Cancelled);
    assert_eq!(statuses[&3], Status::Ok);
}

#[test]
fn sigterm_answers_calls_in_flight_and_exits_zero() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "sleep", Codec::Json, br#"{"ms": 20000}"#);
    worker.send(&Frame::ping(2));
    assert_eq!(worker.recv().kind, Kind::Pong);
    send_signal(&worker.child, libc::SIGTERM);
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (1, Status::Cancelled));
    let (status, rest, _) = worker.finish();
    assert_eq!(status.code(), Some(0));
    assert!(rest.is_empty());
}

/// Sends `bytes` then closes stdin, and checks the broken-stream contract: one ProtocolError
/// reply with request id 0, exit code 3, one line on stderr.
fn assert_broken_stream(bytes: &[u8], expected_message: &str) {
    let mut worker = Worker::test_manifest(&[]);
    worker.send_raw(bytes);
    let (status, replies, stderr) = worker.finish();
    assert_eq!(status.code(), Some(3), "stderr: {stderr}");
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(
        (replies[0].request_id, replies[0].status),
        (0, Status::ProtocolError)
    );
    assert!(
        replies[0].message().contains(expected_message),
        "{}",
        replies[0].message()
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

fn prefixed(frame_bytes: &[u8]) -> Vec<u8> {
    let mut out = (frame_bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(frame_bytes);
    out
}

#[test]
fn bad_magic_breaks_the_stream() {
    let mut bytes = Frame::ping(1).encode_to_vec();
    bytes[0..4].copy_from_slice(b"HTTP");
    assert_broken_stream(&prefixed(&bytes), "magic");
}

#[test]
fn a_bad_version_breaks_the_stream() {
    let mut bytes = Frame::ping(1).encode_to_vec();
    bytes[4] = 2;
    assert_broken_stream(&prefixed(&bytes), "version");
}

#[test]
fn a_length_over_the_maximum_breaks_the_stream() {
    assert_broken_stream(
        &(DEFAULT_MAX_FRAME_BYTES as u32 + 1).to_le_bytes(),
        "exceeds the maximum",
    );
}

#[test]
fn a_frame_truncated_at_eof_breaks_the_stream() {
    let bytes = prefixed(&Frame::call(1, "echo", Codec::Raw, &[7; 100]).encode_to_vec());
    assert_broken_stream(&bytes[..bytes.len() - 10], "truncated");
}

#[test]
fn a_length_prefix_truncated_at_eof_breaks_the_stream() {
    assert_broken_stream(&[1, 0], "truncated");
}

#[test]
fn a_length_that_disagrees_with_the_header_breaks_the_stream() {
    let mut bytes = Frame::call(1, "echo", Codec::Raw, b"abc").encode_to_vec();
    bytes.push(0);
    assert_broken_stream(&prefixed(&bytes), "declares");
}

#[test]
fn a_frame_shorter_than_a_header_breaks_the_stream() {
    assert_broken_stream(&prefixed(b"MOLT"), "truncated");
}

#[test]
fn a_manifest_naming_an_unknown_entry_is_refused_with_one_line() {
    let manifest =
        std::env::temp_dir().join(format!("molt_exports.unknown.{}.json", std::process::id()));
    std::fs::write(&manifest, r#"{"entries": {"ecko": {}}}"#).unwrap();
    let worker = Worker::start(&manifest, &[]);
    let (status, replies, stderr) = worker.finish();
    std::fs::remove_file(manifest).unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(replies.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown entry \"ecko\""), "{stderr}");
}

#[test]
fn a_client_that_reads_late_gets_every_reply_in_order() {
    // Driven by hand: the helper's reader thread would read stdout at once.
    let mut child = Command::new(env!("CARGO_BIN_EXE_molt_worker_test"))
        .arg("--stdio")
        .arg("--exports")
        .arg(repo_file("molt_exports.test.json"))
        .args(["--max-frame-bytes", "1048576"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start molt_worker");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // More unread replies than the worker buffers (4 MiB with 1 MiB frames) plus the pipe
    // holds, so its reader has to wait for the writer instead of piling replies up.
    let calls: u64 = 100;
    let payload_len = 64 << 10;
    let sender = std::thread::spawn(move || {
        let payload = vec![0x5a; payload_len];
        for id in 1..=calls {
            write_frame(&mut stdin, &Frame::call(id, "echo", Codec::Raw, &payload)).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    for id in 1..=calls {
        let reply = Reply::decode(&read_frame(&mut stdout).unwrap());
        assert_eq!((reply.request_id, reply.status), (id, Status::Ok));
        assert_eq!(reply.payload.len(), payload_len);
    }
    sender.join().unwrap();
    assert!(wait_for_exit(&mut child).success());
}
