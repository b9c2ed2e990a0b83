//! `molt_worker::embed` from outside the crate: an app's entries called by a front end of its
//! own, with the runtime's deadlines, cancellation and limits.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use molt_ipc_ring::lock::Mutex;
use molt_worker::embed::{CallOptions, Entries, EntryKind};
use molt_worker::{App, CancelToken, Codec, Ctx, EntryError, Payload};

/// Where the `wait` entry reports that it started, then how it ended.
type Seen = Mutex<Option<mpsc::Sender<Event>>>;

#[derive(Debug, PartialEq)]
enum Event {
    Started,
    SawToken,
    WaitedOut,
}

fn double(n: i64, _ctx: &Ctx<Seen>) -> Result<i64, EntryError> {
    Ok(n * 2)
}

/// Waits up to 30 s for its token, reporting when it starts and how it ends.
fn wait(_: (), ctx: &Ctx<Seen>) -> Result<(), EntryError> {
    let report = |event| {
        if let Some(seen) = ctx.state().lock().as_ref() {
            let _ = seen.send(event);
        }
    };
    report(Event::Started);
    let fired = ctx.cancel_token().wait_timeout(Duration::from_secs(30));
    report(if fired {
        Event::SawToken
    } else {
        Event::WaitedOut
    });
    Ok(())
}

async fn pending(_: (), ctx: Ctx<Seen>) -> Result<(), EntryError> {
    ctx.cancelled().await;
    Err(EntryError::Cancelled)
}

fn app() -> App<Seen> {
    App::with_state(|_| Ok(Mutex::new(None)))
        .inline_entry("double", double)
        .entry("wait", wait)
        .async_entry("pending", pending)
        .entry("disabled", double)
}

const MANIFEST: &str = r#"{"entries": {
    "double": {"max_payload_bytes": 8},
    "wait": {"max_concurrency": 1, "default_timeout_ms": 60000},
    "pending": {}
}}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn entries(runtime: &tokio::runtime::Runtime) -> Entries<Seen> {
    app()
        .exports(MANIFEST)
        .into_entries(None, runtime.handle())
        .unwrap()
}

fn null() -> Payload {
    Payload::new(Codec::Json, b"null".to_vec())
}

/// Sets `state`'s channel and returns its receiving end.
fn watch(entries: &Entries<Seen>) -> mpsc::Receiver<Event> {
    let (sender, receiver) = mpsc::channel();
    *entries.state().lock() = Some(sender);
    receiver
}

#[test]
fn only_the_entries_the_manifest_enables_are_built_with_its_options() {
    let runtime = runtime();
    let entries = entries(&runtime);
    let names: Vec<_> = entries.iter().map(|entry| entry.name()).collect();
    assert_eq!(names, ["double", "wait", "pending"]);
    assert!(entries.get("disabled").is_none());
    let wait = entries.get("wait").unwrap();
    assert_eq!(wait.kind(), EntryKind::Pooled);
    assert_eq!(wait.max_concurrency(), Some(1));
    assert_eq!(wait.default_timeout(), Some(Duration::from_secs(60)));
    assert_eq!(entries.get("double").unwrap().kind(), EntryKind::Inline);
    assert_eq!(entries.get("pending").unwrap().kind(), EntryKind::Async);
}

#[test]
fn without_a_manifest_every_registered_entry_is_enabled() {
    let runtime = runtime();
    let entries = app().into_entries(None, runtime.handle()).unwrap();
    assert!(entries.get("disabled").is_some());
}

#[test]
fn a_manifest_naming_an_unknown_entry_is_refused() {
    let runtime = runtime();
    let refused = app()
        .exports(r#"{"entries": {"nope": {}}}"#)
        .into_entries(None, runtime.handle());
    assert!(refused.is_err());
}

#[test]
fn the_reply_is_encoded_in_the_reply_codec_whatever_the_request_codec() {
    let runtime = runtime();
    let entries = entries(&runtime);
    let call = entries.get("double").unwrap().call(
        Payload::new(Codec::Json, b"21".to_vec()),
        CallOptions::new(Codec::MsgPack),
    );
    let (codec, bytes) = runtime.block_on(call).unwrap().into_parts(Codec::MsgPack);
    assert_eq!(codec, Codec::MsgPack);
    assert_eq!(rmp_serde::from_slice::<i64>(&bytes).unwrap(), 42);
}

#[test]
fn a_payload_over_max_payload_bytes_is_invalid_input() {
    let runtime = runtime();
    let entries = entries(&runtime);
    let call = entries.get("double").unwrap().call(
        Payload::new(Codec::Json, b"123456789".to_vec()),
        CallOptions::new(Codec::Json),
    );
    let Err(EntryError::InvalidInput(message)) = runtime.block_on(call) else {
        panic!("accepted an oversize payload");
    };
    assert!(message.contains("max_payload_bytes (8)"), "{message}");
}

#[test]
fn the_deadline_answers_timeout_and_the_sync_entry_sees_its_token() {
    let runtime = runtime();
    let entries = entries(&runtime);
    let seen = watch(&entries);
    let options = CallOptions {
        deadline: Some(Instant::now() + Duration::from_millis(50)),
        ..CallOptions::new(Codec::Json)
    };
    let outcome = runtime.block_on(entries.get("wait").unwrap().call(null(), options));
    assert!(
        matches!(outcome, Err(EntryError::Timeout(_))),
        "{outcome:?}"
    );
    assert_eq!(next(&seen), Event::Started);
    assert_eq!(next(&seen), Event::SawToken);
}

#[test]
fn firing_the_token_answers_cancelled() {
    let runtime = runtime();
    let entries = entries(&runtime);
    let token = CancelToken::new();
    let options = CallOptions {
        cancel: token.clone(),
        ..CallOptions::new(Codec::Json)
    };
    let call = runtime.spawn(entries.get("pending").unwrap().call(null(), options));
    token.cancel();
    assert_eq!(runtime.block_on(call).unwrap(), Err(EntryError::Cancelled));
}

#[test]
fn dropping_the_call_fires_its_token_and_the_sync_entry_stops() {
    let runtime = runtime();
    let entries = entries(&runtime);
    let seen = watch(&entries);
    let token = CancelToken::new();
    let options = CallOptions {
        cancel: token.clone(),
        ..CallOptions::new(Codec::Json)
    };
    let call = runtime.spawn(entries.get("wait").unwrap().call(null(), options));
    assert_eq!(next(&seen), Event::Started);
    // As a server drops the request of a client that went away.
    call.abort();
    assert_eq!(next(&seen), Event::SawToken);
    assert!(token.is_cancelled());
}

#[test]
fn a_call_past_max_concurrency_is_busy_until_the_entry_returns() {
    let runtime = runtime();
    let entries = entries(&runtime);
    let seen = watch(&entries);
    let wait = entries.get("wait").unwrap();
    let first = CallOptions::new(Codec::Json);
    let first_token = first.cancel.clone();
    let running = runtime.spawn(wait.call(null(), first));
    assert_eq!(next(&seen), Event::Started);
    let second = runtime.block_on(wait.call(null(), CallOptions::new(Codec::Json)));
    let Err(EntryError::Busy(message)) = second else {
        panic!("the second call was not refused: {second:?}");
    };
    assert!(message.contains("concurrency limit"), "{message}");
    first_token.cancel();
    assert_eq!(
        runtime.block_on(running).unwrap(),
        Err(EntryError::Cancelled)
    );
    assert_eq!(next(&seen), Event::SawToken);
}

fn next(seen: &mpsc::Receiver<Event>) -> Event {
    seen.recv_timeout(Duration::from_secs(20))
        .expect("the entry reports")
}
