//! Async entries in the real `molt_worker_test` binary, over stdio: they answer in the call's
//! codec, and a deadline, a Cancel frame, the client leaving or a limit ends them with one
//! reply each. The test entry `sleep_async` waits on tokio's timer.

mod common {
    pub mod process;
    pub mod reply;
    pub mod stdio_frames;
    pub mod stdio_worker;
    pub mod temp_dir;
}

use molt_ipc_ring::frame::{Codec, Frame, Status};
use molt_ipc_ring::platform::clock::monotonic_now_ns;
use serde_json::{json, Value};

use common::process::repo_file;
use common::reply::msgpack;
use common::stdio_worker::Worker;
use common::temp_dir::TempDir;

fn sleep_for(ms: u64) -> Vec<u8> {
    msgpack(&json!({ "ms": ms }))
}

#[test]
fn an_async_entry_answers_in_the_calls_codec() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "sleep_async", Codec::MsgPack, &sleep_for(1));
    worker.call(2, "sleep_async", Codec::Json, br#"{"ms": 1}"#);
    let mut replies = [worker.recv(), worker.recv()];
    replies.sort_by_key(|reply| reply.request_id);
    assert_eq!(replies[0].status, Status::Ok, "{}", replies[0].message());
    assert_eq!(
        rmp_serde::from_slice::<Value>(&replies[0].payload).unwrap(),
        json!({"slept_ms": 1})
    );
    assert_eq!(
        (
            replies[1].status,
            replies[1].codec,
            replies[1].payload.as_slice()
        ),
        (Status::Ok, Codec::Json, &br#"{"slept_ms": 1}"#[..])
    );
}

#[test]
fn a_bad_field_of_an_async_entry_is_invalid_input_naming_it() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "sleep_async", Codec::Json, br#"{"ms": "soon"}"#);
    let reply = worker.recv();
    assert_eq!(reply.status, Status::InvalidInput);
    assert!(
        reply
            .message()
            .starts_with("invalid sleep_async payload: ms: "),
        "{}",
        reply.message()
    );
}

#[test]
fn an_async_call_past_its_deadline_is_answered_timeout_while_it_still_waits() {
    let mut worker = Worker::test_manifest(&[]);
    let deadline = monotonic_now_ns() + 50_000_000;
    worker.send(
        &Frame::call(1, "sleep_async", Codec::MsgPack, &sleep_for(60_000))
            .with_deadline_ns(deadline),
    );
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (1, Status::Timeout));
    assert!(
        monotonic_now_ns() >= deadline,
        "answered before its deadline"
    );
    // The worker goes on: the dropped future left nothing behind.
    worker.call(2, "sleep_async", Codec::MsgPack, &sleep_for(1));
    assert_eq!(worker.recv().status, Status::Ok);
}

#[test]
fn a_cancel_frame_ends_an_async_call_with_one_cancelled_reply() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "sleep_async", Codec::MsgPack, &sleep_for(60_000));
    worker.send(&Frame::cancel(1));
    let replies = worker.replies_until_pong(99);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(
        (replies[0].request_id, replies[0].status),
        (1, Status::Cancelled)
    );
    // A second cancel of the same call, now answered, is ignored.
    worker.send(&Frame::cancel(1));
    assert!(worker.replies_until_pong(100).is_empty());
}

#[test]
fn async_calls_past_max_async_are_busy_and_the_slot_frees_when_one_ends() {
    let mut worker = Worker::test_manifest(&["--max-async", "2"]);
    worker.call(1, "sleep_async", Codec::MsgPack, &sleep_for(60_000));
    worker.call(2, "sleep_async", Codec::MsgPack, &sleep_for(60_000));
    worker.call(3, "sleep_async", Codec::MsgPack, &sleep_for(1));
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (3, Status::Busy));
    assert!(reply.message().contains("async"), "{}", reply.message());
    worker.send(&Frame::cancel(1));
    assert_eq!(worker.recv().status, Status::Cancelled);
    // The cancelled call's slot is given back once its future is dropped, which follows the
    // reply closely; a later call gets it.
    let ok = (4..).take(200).any(|request_id| {
        worker.call(request_id, "sleep_async", Codec::MsgPack, &sleep_for(1));
        worker.recv().status == Status::Ok
    });
    assert!(ok, "the slot of the cancelled call never came back");
}

#[test]
fn an_async_entrys_concurrency_limit_answers_busy() {
    let dir = TempDir::new("async-limit");
    std::fs::create_dir_all(dir.path()).unwrap();
    let manifest = dir.path().join("exports.json");
    let mut text: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("molt_exports.test.json")).unwrap(),
    )
    .unwrap();
    text["entries"]["sleep_async"]["max_concurrency"] = json!(1);
    std::fs::write(&manifest, text.to_string()).unwrap();
    let mut worker = Worker::start(&manifest, &[]);
    worker.call(1, "sleep_async", Codec::MsgPack, &sleep_for(60_000));
    worker.call(2, "sleep_async", Codec::MsgPack, &sleep_for(1));
    let reply = worker.recv();
    assert_eq!((reply.request_id, reply.status), (2, Status::Busy));
    assert_eq!(
        reply.message(),
        "busy: the entry is at its concurrency limit"
    );
}

#[test]
fn closing_stdin_answers_async_calls_in_flight_and_exits_cleanly() {
    let mut worker = Worker::test_manifest(&[]);
    worker.call(1, "sleep_async", Codec::MsgPack, &sleep_for(60_000));
    worker.call(2, "sleep_async", Codec::MsgPack, &sleep_for(60_000));
    // Both are in flight once a ping sent after them is answered.
    assert!(worker.replies_until_pong(9).is_empty());
    let (status, replies, stderr) = worker.finish();
    assert!(status.success(), "{status}: {stderr}");
    let mut ids: Vec<(u64, Status)> = replies.iter().map(|r| (r.request_id, r.status)).collect();
    ids.sort_by_key(|&(id, _)| id);
    assert_eq!(ids, [(1, Status::Cancelled), (2, Status::Cancelled)]);
}
