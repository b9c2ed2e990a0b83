//! The bodies of molt's fuzz targets, one function per target.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line `fuzz_target!` calling the function of the same
//! name here, and `tests/corpus_replay.rs` calls the same functions on every committed input
//! of `corpus/<name>/`, so `make test` keeps on stable what `make fuzz` found on nightly. A
//! body returns normally for any input; a broken property panics, which is what both
//! libFuzzer and the replay test report.
//!
//! ```
//! molt_fuzz::frame_decode(b"MOLT");
//! molt_fuzz::manifest_parse(br#"{"entries": {"echo": {}}}"#);
//! ```
#![deny(missing_docs)]

mod web;

use std::collections::VecDeque;
use std::fs::File;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use memmap2::MmapMut;
use molt_ipc_ring::frame::{self, Codec, DEFAULT_MAX_FRAME_BYTES, HEADER_LEN};
use molt_ipc_ring::lock::{Condvar, Mutex};
use molt_ipc_ring::platform::clock::monotonic_now_ns;
use molt_ipc_ring::ring::PopError;
use molt_ipc_ring::segment::{ClientSide, SegmentConfig, WorkerSide};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};
use molt_data::{TableCall, TableLimits};
use molt_demo_worker::DemoState;
use molt_worker::testing::TestClient;
use molt_worker::{CancelToken, EntryError, Payload};

pub use self::web::web_request;

/// A target's body: returns for any input, panics when a property breaks.
pub type TargetBody = fn(&[u8]);

/// Every target, by the name of its corpus directory, for the replay test.
pub const TARGETS: &[(&str, TargetBody)] = &[
    ("frame_decode", frame_decode),
    ("manifest_parse", manifest_parse),
    ("entry_list_items", |data| entry_call("list_items", data)),
    ("entry_compute", |data| entry_call("compute", data)),
    ("entry_sleep", |data| entry_call("sleep", data)),
    ("entry_spin", |data| entry_call("spin", data)),
    ("ring_consumer", ring_consumer),
    ("table_decode", table_decode),
    ("web_request", web_request),
];

/// `data` is one frame as a transport delimits it. Decoding never panics; a frame that
/// decodes re-encodes to the same bytes; the stream helpers agree with the decoder; an
/// answerable error carries the request id found at its fixed offset; a frame one byte over
/// the maximum is refused as too large.
///
/// ```
/// use molt_ipc_ring::frame::{Codec, Frame};
/// molt_fuzz::frame_decode(&Frame::call(1, "echo", Codec::Raw, b"x").encode_to_vec());
/// ```
pub fn frame_decode(data: &[u8]) {
    let declared = frame::declared_len(data);
    let peeked = frame::peek_deadline(data);
    assert_eq!(peeked.is_some(), data.len() >= HEADER_LEN);
    match frame::decode(data, DEFAULT_MAX_FRAME_BYTES) {
        Ok(decoded) => {
            assert_eq!(
                decoded.encode_to_vec(),
                data,
                "a decoded frame re-encodes to its bytes"
            );
            assert_eq!(declared, Ok(data.len() as u64));
            assert_eq!(peeked, Some((decoded.request_id, decoded.deadline_ns)));
            if !data.is_empty() {
                assert!(matches!(
                    frame::decode(data, data.len() - 1),
                    Err(frame::DecodeError::TooLarge { .. })
                ));
            }
        }
        Err(err) => {
            assert!(!err.to_string().is_empty());
            if let Some(request_id) = err.request_id() {
                assert_eq!(Some(request_id), peeked.map(|(id, _)| id));
                assert_eq!(
                    declared,
                    Ok(data.len() as u64),
                    "answerable errors keep the framing"
                );
            }
        }
    }
}

/// `data` is the text of an exports manifest. Parsing never panics, and a manifest that
/// parses names only entries the worker has, none with a concurrency limit of zero.
///
/// ```
/// molt_fuzz::manifest_parse(br#"{"entries": {"nope": {}}}"#);
/// ```
pub fn manifest_parse(data: &[u8]) {
    // The worker reads the manifest with read_to_string, which refuses anything but UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Through the public API, as a worker binary starts: parse, check the names against the
    // registered entries, read the settings the app asks for (none: any section is refused).
    match molt_demo_worker::test_app().exports(text.to_owned()).test_client() {
        Ok(client) => {
            let _ = client.state();
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}

/// How long an entry may run on one fuzz input before its token fires: long enough to get
/// through decoding and validation and into the work, short enough that an input asking for
/// the maximum amount of work costs the fuzzer milliseconds, not seconds.
const ENTRY_BUDGET: Duration = Duration::from_millis(20);

/// `data[0]` picks the codec (its wire value modulo 4), the rest is the payload of one call of
/// `entry`. The entry never panics; an Ok result is a well-formed value in the call's codec;
/// Cancelled only comes after the token fired; an error message carries no path, source
/// location or panic text that the input did not already contain.
///
/// `sleep` and `spin` run with their token already fired (their work is waiting; what is
/// fuzzed is how they read the payload); the others get [`ENTRY_BUDGET`] before it fires.
///
/// ```
/// molt_fuzz::entry_call("compute", b"\x02{\"n\": 10}");
/// ```
pub fn entry_call(entry: &str, data: &[u8]) {
    let Some((&codec_byte, payload)) = data.split_first() else {
        return;
    };
    let codec = Codec::from_u8(codec_byte % 4).expect("0..4 are all codecs");
    let waits_only = matches!(entry, "sleep" | "spin");
    let (result, fired) = with_budget(waits_only, |cancel| {
        client().call_with_token(entry, Payload::new(codec, payload.to_vec()), cancel.clone())
    });
    match result {
        Ok(reply) => {
            assert_eq!(reply.codec_for(codec), codec, "{entry} answered in another codec");
            match codec {
                Codec::MsgPack => {
                    rmp_serde::from_slice::<serde::de::IgnoredAny>(reply.bytes())
                        .expect("Ok result is msgpack");
                }
                Codec::Json => {
                    serde_json::from_slice::<serde::de::IgnoredAny>(reply.bytes())
                        .expect("Ok result is JSON");
                }
                Codec::Raw | Codec::ArrowIpc => {
                    panic!("{entry} answered Ok to a {codec:?} payload")
                }
            }
        }
        Err(EntryError::Cancelled) => assert!(fired, "Cancelled without the token firing"),
        Err(err) => assert_safe_message(err.message(), data),
    }
}

/// The demo's test app, built once: the entries exactly as the worker binary runs them.
fn client() -> &'static TestClient<DemoState> {
    static CLIENT: OnceLock<TestClient<DemoState>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        molt_demo_worker::test_app()
            .test_client()
            .expect("the demo app builds")
    })
}

/// What an error message shown to a client must not contain: a source location, a path into
/// the build machine, or panic and backtrace text.
const UNSAFE_IN_MESSAGES: &[&str] = &[
    ".rs:",
    "/src/",
    "/home/",
    "/work/",
    "/root/",
    "panicked",
    "backtrace",
];

/// Panics if `message` carries one of [`UNSAFE_IN_MESSAGES`] that `input` did not contain
/// (an entry may quote the caller's own field values back).
///
/// ```
/// molt_fuzz::assert_safe_message("field n must be at least 1", b"");
/// ```
pub fn assert_safe_message(message: &str, input: &[u8]) {
    let input = String::from_utf8_lossy(input).to_lowercase();
    let lowered = message.to_lowercase();
    for pattern in UNSAFE_IN_MESSAGES {
        assert!(
            !lowered.contains(pattern) || input.contains(pattern),
            "error message leaks {pattern:?}: {message:?}"
        );
    }
}

/// `data` is a table call's payload (Arrow IPC streams back to back), read as the data path's
/// entries read it: with limits, then into Polars. Never panics; a refusal is InvalidInput
/// with a safe message; what is accepted is within the limits, and Polars takes it (or names
/// the column it cannot) with every row, and gives it back with every row.
///
/// ```
/// molt_fuzz::table_decode(b"\xff\xff\xff\xff\x00\x00\x00\x00");
/// ```
pub fn table_decode(data: &[u8]) {
    let limits = TableLimits {
        max_bytes: 1 << 20,
        max_rows: 100_000,
        max_columns: 64,
    };
    let payload = Payload::new(Codec::ArrowIpc, data.to_vec());
    let call = match TableCall::read("fuzz", payload, &limits) {
        Ok(call) => call,
        Err(EntryError::InvalidInput(message)) => return assert_safe_message(&message, data),
        Err(other) => panic!("a table payload was refused with {other:?}"),
    };
    for table in call.tables() {
        assert!(table.num_rows() <= limits.max_rows, "a table over max_rows was accepted");
        match molt_data::to_polars(table) {
            Ok(frame) => {
                assert_eq!(frame.height() as u64, table.num_rows(), "rows lost on the way into Polars");
                let back = molt_data::from_polars(frame).expect("a frame from a table converts back");
                assert_eq!(back.num_rows(), table.num_rows(), "rows lost on the way back");
            }
            Err(EntryError::InvalidInput(message)) => assert_safe_message(&message, data),
            Err(other) => panic!("a table Polars cannot take gave {other:?}"),
        }
    }
}

/// Runs `call` with a fresh token, fired up front when `fire_now`, else by a watchdog thread
/// once [`ENTRY_BUDGET`] has passed. Returns the result and whether the token fired.
fn with_budget<R>(fire_now: bool, call: impl FnOnce(&CancelToken) -> R) -> (R, bool) {
    let token = CancelToken::new();
    if fire_now {
        token.cancel();
        return (call(&token), true);
    }
    let watchdog = Watchdog::get();
    let generation = watchdog.watch(&token);
    let result = call(&token);
    watchdog.unwatch(generation);
    let fired = token.is_cancelled();
    (result, fired)
}

/// One thread that fires the token of a call running longer than [`ENTRY_BUDGET`]. It sleeps
/// on a condition variable while nothing runs, so an idle fuzzer costs nothing.
struct Watchdog {
    state: Mutex<Watched>,
    changed: Condvar,
}

#[derive(Default)]
struct Watched {
    /// Bumped by every `watch`, so the thread never fires a later call's token for an earlier
    /// call's budget.
    generation: u64,
    running: Option<CancelToken>,
}

impl Watchdog {
    fn get() -> &'static Watchdog {
        static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
        WATCHDOG.get_or_init(|| {
            let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
                state: Mutex::default(),
                changed: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("fuzz-watchdog".into())
                .spawn(move || watchdog.run())
                .expect("spawn the watchdog thread");
            watchdog
        })
    }

    fn watch(&self, token: &CancelToken) -> u64 {
        let mut state = self.state.lock();
        state.generation += 1;
        state.running = Some(token.clone());
        self.changed.notify_one();
        state.generation
    }

    fn unwatch(&self, generation: u64) {
        let mut state = self.state.lock();
        if state.generation == generation {
            state.running = None;
        }
        self.changed.notify_one();
    }

    fn run(&self) {
        let mut state = self.state.lock();
        loop {
            while state.running.is_none() {
                state = self.changed.wait(state);
            }
            let generation = state.generation;
            let budget_end = Instant::now() + ENTRY_BUDGET;
            loop {
                let left = budget_end.saturating_duration_since(Instant::now());
                if state.generation != generation || state.running.is_none() {
                    break;
                }
                if left.is_zero() {
                    if let Some(token) = state.running.take() {
                        token.cancel();
                    }
                    break;
                }
                state = self.changed.wait_timeout(state, left);
            }
        }
    }
}

/// Data areas of the fuzzed segment's rings: small, so that short inputs reach wrap-around,
/// padding records and a full ring.
const FUZZ_RING_CAPACITY: usize = 256;
/// Records one pass of the pop loop may yield. Every record takes at least 8 bytes and
/// `tail - head <= capacity` is checked, so an honest or hostile ring ends sooner; reaching
/// this bound means the consumer can be made to loop forever.
const MAX_POPS_PER_PASS: usize = FUZZ_RING_CAPACITY / 8 + 1;

/// `data` is a script of operations on one shared-memory segment: honest pushes and pops by
/// both sides, and hostile writes of arbitrary bytes anywhere in the segment (header,
/// indices, record headers, payloads) through a second mapping, as a peer process could.
///
/// Opcodes (one byte, modulo 6), then their operands:
/// - 0 `offset: u16 LE, len: u8, bytes`: hostile write at `offset % segment length`;
/// - 1 `len: u8`: the client pushes a request of `len` bytes; 2 `len: u8`: the worker pushes
///   a response;
/// - 3: the worker pops one request; 4: the client pops one response;
/// - 5: drain both rings, then wait on each with a deadline already passed.
///
/// Properties: no operation panics or reads outside the segment (the mapping is exactly its
/// pages); a drain ends with Empty or Corrupt within [`MAX_POPS_PER_PASS`] records; a wait
/// past its deadline returns at once; a popped record is at most the ring's maximum record
/// length; and while no hostile write has happened, both rings behave exactly like FIFO
/// queues of the records pushed (checked against a model). After the script, a fresh attach
/// of the scribbled segment fails or succeeds without panicking.
///
/// ```
/// molt_fuzz::ring_consumer(&[1, 10, 3, 5]);
/// ```
pub fn ring_consumer(data: &[u8]) {
    let config = SegmentConfig {
        request_capacity: FUZZ_RING_CAPACITY,
        response_capacity: FUZZ_RING_CAPACITY,
    };
    let (mut worker, file) = WorkerSide::create(&config).expect("create a segment");
    let mut client = ClientSide::attach(file.try_clone().expect("dup the memfd"))
        .expect("attach a fresh segment");
    let mut hostile = hostile_mapping(&file);
    let mut requests = RingModel::default();
    let mut responses = RingModel::default();
    let mut script = Script(data);
    while let Some(opcode) = script.byte() {
        match opcode % 6 {
            0 => {
                let (Some(offset), Some(len)) = (script.u16(), script.byte()) else {
                    break;
                };
                let bytes = script.take(usize::from(len));
                let start = usize::from(offset) % hostile.len();
                let end = (start + bytes.len()).min(hostile.len());
                hostile[start..end].copy_from_slice(&bytes[..end - start]);
                requests.tainted = true;
                responses.tainted = true;
            }
            1 => {
                let Some(len) = script.byte() else { break };
                let record = record_of(len, requests.pushed);
                requests.pushed_if(client.requests.push(&record).is_ok(), record);
            }
            2 => {
                let Some(len) = script.byte() else { break };
                let record = record_of(len, responses.pushed);
                responses.pushed_if(worker.responses.push(&record).is_ok(), record);
            }
            3 => requests.check_pop(pop_one(&mut worker.requests)),
            4 => responses.check_pop(pop_one(&mut client.responses)),
            _ => {
                drain(&mut worker.requests, &mut requests);
                drain(&mut client.responses, &mut responses);
                let no_spin = WaitConfig {
                    spin: Duration::ZERO,
                    ..WaitConfig::default()
                };
                let past = monotonic_now_ns();
                for consumer in [&mut worker.requests, &mut client.responses] {
                    if let Ok(outcome) = consumer.wait(past, &no_spin, || false) {
                        assert!(matches!(
                            outcome,
                            WaitOutcome::Ready | WaitOutcome::TimedOut
                        ));
                    }
                }
            }
        }
    }
    drop(hostile);
    let _ = ClientSide::attach(file);
}

/// A second mapping of the segment: what a hostile peer process sees and writes.
fn hostile_mapping(file: &File) -> MmapMut {
    // SAFETY: the memfd is sealed against shrinking, so the pages stay; this mapping is only
    // written through the slice, and the endpoints under test treat the memory as shared.
    unsafe { MmapMut::map_mut(file) }.expect("map the segment a second time")
}

/// A record of `len` bytes whose content identifies it (`sequence` in every byte), so the
/// model notices a record delivered out of order or twice.
fn record_of(len: u8, sequence: usize) -> Vec<u8> {
    vec![sequence as u8; usize::from(len)]
}

/// What one pop gave: the copied record, or why there was none.
fn pop_one(consumer: &mut molt_ipc_ring::ring::Consumer) -> Result<Vec<u8>, PopError> {
    let record = consumer.pop()?;
    assert!(record.len() <= molt_ipc_ring::ring::max_record_len(FUZZ_RING_CAPACITY));
    let mut bytes = Vec::new();
    record.append_to(&mut bytes);
    let _ = record.peek_deadline();
    if let Ok(frame) = frame::decode(&bytes, DEFAULT_MAX_FRAME_BYTES) {
        assert_eq!(frame.encoded_len(), bytes.len());
    }
    record.consume();
    Ok(bytes)
}

fn drain(consumer: &mut molt_ipc_ring::ring::Consumer, model: &mut RingModel) {
    for _ in 0..MAX_POPS_PER_PASS {
        let popped = pop_one(consumer);
        let ended = popped.is_err();
        model.check_pop(popped);
        if ended {
            return;
        }
    }
    panic!("the consumer kept yielding records past what the ring can hold");
}

/// The records pushed into one ring and not yet popped, as an honest pair would see them.
#[derive(Default)]
struct RingModel {
    queue: VecDeque<Vec<u8>>,
    /// Records pushed so far, used to tell them apart.
    pushed: usize,
    /// A hostile write happened: from here on only the no-panic properties hold.
    tainted: bool,
}

impl RingModel {
    fn pushed_if(&mut self, accepted: bool, record: Vec<u8>) {
        if accepted {
            self.pushed += 1;
            self.queue.push_back(record);
        }
    }

    fn check_pop(&mut self, popped: Result<Vec<u8>, PopError>) {
        let expected = self.queue.pop_front();
        if self.tainted {
            return;
        }
        match (popped, expected) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "records come out in the order pushed"),
            (Err(PopError::Empty), None) => {}
            (got, want) => {
                panic!("honest ring diverged from its model: popped {got:?}, expected {want:?}")
            }
        }
    }
}

/// A cursor over the fuzz input.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }
}
