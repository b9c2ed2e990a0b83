//! The dispatcher: turns request frames into exactly one reply each, whatever the transport.
//!
//! A transport opens a [`Connection`] per client with a [`ReplySink`] and feeds it whole
//! frames with [`Connection::submit`], a plain synchronous call that never blocks on a full
//! queue and may be made from any OS thread (the stdio reader thread, the shared-memory
//! poller). Replies, possibly out of order, go to the sink from whichever thread decides them.
//!
//! - Inline entries (`Entry::runs_inline`: echo, health) run on the submitting thread: no
//!   hop, no queue, no timer, one allocation for the result.
//! - Other entries are copied into a [`call::PooledCall`], admitted to a bounded queue (full:
//!   Busy at once) and run by a fixed pool of compute threads. A tokio timer answers Timeout at
//!   the deadline and fires the call's token; the compute thread stays busy until the entry
//!   notices, so the pool stays bounded.
//! - Completion, deadline, cancel frame and shutdown race for the call's once-flag; the winner
//!   sends the one reply.

mod admission;
mod call;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::{self, Codec, DecodeError, Frame, Kind, Metrics, Status, HEADER_LEN};
use tokio::runtime::Handle;

use self::admission::AdmissionQueue;
use self::call::{lock, InFlight, PooledCall};
use crate::cancel::CancelToken;
use crate::clock;
use crate::entries::{CallContext, Entry, EntryError, EntryResult};
use crate::manifest::EntryOptions;

/// Where a connection's replies go. Called from any thread, once per reply; a sink whose
/// peer is gone drops the frame.
pub trait ReplySink: Send + Sync + 'static {
    /// Delivers one encoded-on-demand reply (or pong) to the peer.
    fn send_reply(&self, frame: &Frame<'_>);
}

/// Sees every reply to a call of an enabled entry, after it is decided and before it is sent:
/// the seam for per-entry metrics. Runs on whichever thread decided the reply, so it must be
/// cheap.
pub trait ReplyObserver: Send + Sync + 'static {
    /// One reply of the enabled entry at position `entry` in the list given to
    /// [`Dispatcher::start`] (named `name`), with `status` and its timings.
    fn on_reply(&self, entry: usize, name: &'static str, status: Status, timings: &Timings);
}

/// Where a call's time went, in nanoseconds; the reply's [`Metrics`] carry the same in
/// microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// From arrival to the start of execution; for a call that never started, to its reply.
    pub queue: Duration,
    /// Spent executing (zero for a call that never started).
    pub exec: Duration,
    /// Admission queue depth when the call arrived.
    pub queue_depth: u32,
}

impl Timings {
    /// No time spent: the timings of a call answered on arrival (Busy, expired, unknown).
    fn on_arrival(queue_depth: u32) -> Self {
        Self {
            queue_depth,
            ..Self::default()
        }
    }

    /// The same timings as the reply header carries them.
    fn metrics(&self) -> Metrics {
        Metrics {
            queue_us: micros(self.queue),
            exec_us: micros(self.exec),
            queue_depth: self.queue_depth,
        }
    }
}

/// Sizes of the dispatcher's bounded resources.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Calls waiting for a compute thread; one more is answered Busy.
    pub max_queue: usize,
    /// Compute threads running non-inline entries.
    pub compute_threads: usize,
    /// Largest frame accepted, header included.
    pub max_frame_bytes: usize,
}

struct EnabledEntry {
    entry: Box<dyn Entry>,
    options: EntryOptions,
    /// Calls admitted and not yet returned from the entry (queued or running). Kept at or
    /// below `options.max_concurrency` by `try_admit`.
    admitted: AtomicU32,
}

impl EnabledEntry {
    fn try_admit(&self) -> bool {
        let limit = self.options.max_concurrency.unwrap_or(u32::MAX);
        // Relaxed: a counter; the slot it grants guards no data.
        self.admitted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        // Relaxed: as in `try_admit`.
        self.admitted.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shared by every connection; see the module docs.
pub struct Dispatcher {
    entries: Vec<EnabledEntry>,
    queue: AdmissionQueue<Arc<PooledCall>>,
    runtime: Handle,
    observer: Box<dyn ReplyObserver>,
    max_frame_bytes: usize,
    /// Handed to inline entries: they finish before anything could cancel them.
    never_cancelled: CancelToken,
    pool: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Dispatcher {
    /// A dispatcher running `enabled` entries (each with its manifest options), with timers on
    /// `runtime`, and its compute pool started.
    pub fn start(
        enabled: Vec<(Box<dyn Entry>, EntryOptions)>,
        limits: Limits,
        runtime: Handle,
        observer: Box<dyn ReplyObserver>,
    ) -> std::io::Result<Arc<Self>> {
        let dispatcher = Arc::new(Self {
            entries: enabled
                .into_iter()
                .map(|(entry, options)| EnabledEntry {
                    entry,
                    options,
                    admitted: AtomicU32::new(0),
                })
                .collect(),
            queue: AdmissionQueue::new(limits.max_queue),
            runtime,
            observer,
            max_frame_bytes: limits.max_frame_bytes,
            never_cancelled: CancelToken::new(),
            pool: std::sync::Mutex::new(Vec::new()),
        });
        let mut pool = Vec::with_capacity(limits.compute_threads);
        for index in 0..limits.compute_threads {
            let worker = Arc::clone(&dispatcher);
            let thread = std::thread::Builder::new()
                .name(format!("molt-compute-{index}"))
                .spawn(move || worker.run_compute_thread());
            match thread {
                Ok(handle) => pool.push(handle),
                Err(err) => {
                    dispatcher.queue.close();
                    return Err(err);
                }
            }
        }
        *lock(&dispatcher.pool) = pool;
        Ok(dispatcher)
    }

    /// Opens a connection whose replies go to `sink`.
    pub fn connect(self: &Arc<Self>, sink: Arc<dyn ReplySink>) -> Connection {
        Connection {
            state: Arc::new(ConnectionState {
                dispatcher: Arc::clone(self),
                sink,
                in_flight: InFlight::default(),
                open: AtomicBool::new(true),
            }),
        }
    }

    /// Stops the compute pool once the calls already queued have been dealt with, and waits
    /// for it. Connections should be shut down first so that queued calls are skipped.
    pub fn stop(&self) {
        self.queue.close();
        let pool = std::mem::take(&mut *lock(&self.pool));
        for thread in pool {
            // A compute thread only ends by returning: entry panics are caught inside it.
            let _ = thread.join();
        }
    }

    /// Calls waiting in the admission queue now.
    pub fn queue_depth(&self) -> u32 {
        self.queue.depth()
    }

    fn find(&self, name: &str) -> Option<usize> {
        // A handful of entries: a linear scan of short names beats hashing.
        self.entries
            .iter()
            .position(|enabled| enabled.entry.name() == name)
    }

    fn observe(&self, entry: usize, status: Status, timings: &Timings) {
        self.observer
            .on_reply(entry, self.entries[entry].entry.name(), status, timings);
    }

    /// The reply for an entry's result: its payload in the call's codec, or a Raw message.
    /// A result too large for one frame is the worker's failure, not the caller's.
    fn outcome<'r>(&self, result: &'r EntryResult, call_codec: Codec) -> (Status, Codec, &'r [u8]) {
        match result {
            Ok(payload) if HEADER_LEN + payload.len() > self.max_frame_bytes => {
                log::error!(
                    "a result of {} bytes exceeds --max-frame-bytes; answered InternalError",
                    payload.len()
                );
                (
                    Status::InternalError,
                    Codec::Raw,
                    RESULT_TOO_LARGE_MESSAGE.as_bytes(),
                )
            }
            Ok(payload) => (Status::Ok, call_codec, payload),
            Err(EntryError::InvalidInput(message)) => {
                (Status::InvalidInput, Codec::Raw, message.as_bytes())
            }
            Err(EntryError::Cancelled) => {
                (Status::Cancelled, Codec::Raw, CANCELLED_MESSAGE.as_bytes())
            }
            Err(EntryError::Internal(message)) => {
                (Status::InternalError, Codec::Raw, message.as_bytes())
            }
        }
    }

    fn run_compute_thread(&self) {
        while let Some(call) = self.queue.pop() {
            self.run_pooled(&self.entries[call.entry], &call);
        }
    }

    /// Runs one admitted call and gives its concurrency slot back as soon as the entry is
    /// done with it: before the reply goes out, so a client that sends its next call on
    /// seeing the reply never finds the slot still taken. A call that timed out or was
    /// cancelled while running keeps its slot until the entry actually returns.
    fn run_pooled(&self, enabled: &EnabledEntry, call: &PooledCall) {
        if call.has_replied() {
            enabled.release();
            return;
        }
        if call
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            enabled.release();
            call.finish(Status::Timeout, Codec::Raw, TIMEOUT_MESSAGE.as_bytes());
            return;
        }
        call.mark_started();
        let ctx = CallContext {
            codec: call.codec,
            payload: &call.payload,
            cancel: &call.token,
        };
        let result = run_entry(enabled.entry.as_ref(), &ctx, call.request_id);
        enabled.release();
        let (status, codec, payload) = self.outcome(&result, call.codec);
        call.finish(status, codec, payload);
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.queue.close();
    }
}

const TIMEOUT_MESSAGE: &str = "deadline exceeded";
const INTERNAL_MESSAGE: &str = "internal error";
const RESULT_TOO_LARGE_MESSAGE: &str = "internal error: the result is too large for one frame";

/// Runs an entry, turning a panic into `EntryError::Internal` with a message safe to show.
/// The panic hook has already logged the panic's message and location to stderr.
fn run_entry(entry: &dyn Entry, ctx: &CallContext<'_>, request_id: u64) -> EntryResult {
    catch_unwind(AssertUnwindSafe(|| entry.call(ctx))).unwrap_or_else(|_| {
        log::error!(
            "entry {} panicked on request {request_id}; answered InternalError",
            entry.name()
        );
        Err(EntryError::Internal(INTERNAL_MESSAGE.to_owned()))
    })
}

const CANCELLED_MESSAGE: &str = "cancelled";
const SHUTDOWN_MESSAGE: &str = "cancelled: the worker is shutting down";

/// Microseconds in a `u32` metric, saturating (71 minutes).
fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// State shared by a connection and its calls in flight.
pub struct ConnectionState {
    dispatcher: Arc<Dispatcher>,
    sink: Arc<dyn ReplySink>,
    in_flight: InFlight,
    /// False once the peer is gone: replies are dropped instead of sent.
    open: AtomicBool,
}

impl ConnectionState {
    fn send(&self, frame: &Frame<'_>) {
        // Relaxed: a late reply slipping through just after close is harmless; the sink of a
        // closed peer drops it.
        if self.open.load(Ordering::Relaxed) {
            self.sink.send_reply(frame);
        }
    }

    fn send_error(&self, request_id: u64, status: Status, message: &str, metrics: Metrics) {
        self.send(
            &Frame::reply(request_id, status, Codec::Raw, message.as_bytes()).with_metrics(metrics),
        );
    }

    /// Every call still in flight, removed from the table; each still needs its reply.
    fn take_in_flight(&self) -> Vec<Arc<PooledCall>> {
        lock(&self.in_flight)
            .drain()
            .map(|(_, call)| call)
            .collect()
    }
}

/// One client's session with the dispatcher. Dropping it closes it: calls in flight are
/// cancelled and their replies dropped.
pub struct Connection {
    state: Arc<ConnectionState>,
}

impl Connection {
    /// Handles one whole frame from the peer. Errors that concern one request are answered on
    /// the connection; an error that means the stream cannot be trusted any more is returned,
    /// and the transport should end the connection with [`Connection::fail_stream`].
    pub fn submit(&self, bytes: &[u8]) -> Result<(), DecodeError> {
        let arrived = Instant::now();
        let state = &self.state;
        let frame = match frame::decode(bytes, state.dispatcher.max_frame_bytes) {
            Ok(frame) => frame,
            Err(err) => {
                let request_id = err.request_id().ok_or(err)?;
                state.send_error(
                    request_id,
                    Status::ProtocolError,
                    &err.to_string(),
                    self.idle_metrics(),
                );
                return Ok(());
            }
        };
        match frame.kind {
            Kind::Call => self.call(&frame, arrived),
            Kind::Cancel => self.cancel(frame.request_id),
            Kind::Ping => state.send(&Frame::pong(frame.request_id)),
            Kind::Reply | Kind::Pong => state.send_error(
                frame.request_id,
                Status::ProtocolError,
                "a worker accepts calls, cancels and pings only",
                self.idle_metrics(),
            ),
        }
        Ok(())
    }

    /// Answers every call in flight Cancelled (their tokens fire); the connection stays open
    /// so those replies reach the peer. For a peer that is going away in good order.
    pub fn shutdown(&self) {
        for call in self.state.take_in_flight() {
            call.interrupt(Status::Cancelled, SHUTDOWN_MESSAGE);
        }
    }

    /// Ends a connection whose stream broke: in-flight calls are answered as by
    /// [`Connection::shutdown`], then one ProtocolError with request id 0 says why, then the
    /// connection closes.
    pub fn fail_stream(&self, reason: &str) {
        self.shutdown();
        self.state
            .send_error(0, Status::ProtocolError, reason, self.idle_metrics());
        self.close();
    }

    /// Closes the connection: calls in flight are cancelled and their replies dropped.
    pub fn close(&self) {
        // Relaxed: see `ConnectionState::send`.
        self.state.open.store(false, Ordering::Relaxed);
        for call in self.state.take_in_flight() {
            call.interrupt(Status::Cancelled, CANCELLED_MESSAGE);
        }
    }

    fn idle_metrics(&self) -> Metrics {
        Metrics {
            queue_us: 0,
            exec_us: 0,
            queue_depth: self.state.dispatcher.queue.depth(),
        }
    }

    fn call(&self, frame: &Frame<'_>, arrived: Instant) {
        let state = &self.state;
        let dispatcher = &*state.dispatcher;
        let queue_depth = dispatcher.queue.depth();
        let on_arrival = Timings::on_arrival(queue_depth);
        let metrics = on_arrival.metrics();
        let Some(index) = dispatcher.find(frame.entry) else {
            let message = format!("unknown entry: {}", frame.entry);
            state.send_error(frame.request_id, Status::NotFound, &message, metrics);
            return;
        };
        let enabled = &dispatcher.entries[index];
        let reject = |status: Status, message: &str| {
            dispatcher.observe(index, status, &on_arrival);
            state.send_error(frame.request_id, status, message, metrics);
        };
        let deadline = match deadline_of(frame.deadline_ns, &enabled.options, arrived) {
            Deadline::Passed => return reject(Status::Timeout, TIMEOUT_MESSAGE),
            Deadline::At(instant) => Some(instant),
            Deadline::None => None,
        };
        if !enabled.try_admit() {
            return reject(Status::Busy, "busy: the entry is at its concurrency limit");
        }
        if enabled.entry.runs_inline() {
            self.run_inline(enabled, index, frame, arrived, queue_depth);
            return;
        }
        let call = Arc::new(PooledCall::new(
            index,
            frame,
            deadline,
            arrived,
            queue_depth,
            Arc::clone(state),
        ));
        {
            let mut in_flight = lock(&state.in_flight);
            if in_flight.contains_key(&frame.request_id) {
                drop(in_flight);
                enabled.release();
                let message = format!("request_id {} is already in flight", frame.request_id);
                return state.send_error(
                    frame.request_id,
                    Status::ProtocolError,
                    &message,
                    metrics,
                );
            }
            in_flight.insert(frame.request_id, Arc::clone(&call));
        }
        if let Err(call) = dispatcher.queue.try_push(Arc::clone(&call)) {
            enabled.release();
            // Through `finish`, not a direct reply: the call is in the table, so a shutdown on
            // the liveness thread may have answered it Cancelled already; one reply only.
            call.finish(
                Status::Busy,
                Codec::Raw,
                b"busy: the admission queue is full",
            );
            return;
        }
        if let Some(deadline) = deadline {
            let timed = Arc::clone(&call);
            call.arm_timer(|| {
                dispatcher
                    .runtime
                    .spawn(async move {
                        tokio::time::sleep_until(deadline.into()).await;
                        timed.interrupt(Status::Timeout, TIMEOUT_MESSAGE);
                    })
                    .abort_handle()
            });
        }
    }

    fn run_inline(
        &self,
        enabled: &EnabledEntry,
        index: usize,
        frame: &Frame<'_>,
        arrived: Instant,
        queue_depth: u32,
    ) {
        let dispatcher = &*self.state.dispatcher;
        let started = Instant::now();
        let ctx = CallContext {
            codec: frame.codec,
            payload: frame.payload,
            cancel: &dispatcher.never_cancelled,
        };
        let result = run_entry(enabled.entry.as_ref(), &ctx, frame.request_id);
        // As for pooled calls: the slot is free before the reply goes out.
        enabled.release();
        let timings = Timings {
            queue: started - arrived,
            exec: started.elapsed(),
            queue_depth,
        };
        let (status, codec, payload) = dispatcher.outcome(&result, frame.codec);
        dispatcher.observe(index, status, &timings);
        self.state.send(
            &Frame::reply(frame.request_id, status, codec, payload).with_metrics(timings.metrics()),
        );
    }

    fn cancel(&self, request_id: u64) {
        // A cancel of a call that already replied, or never existed, is ignored (protocol.md).
        let call = lock(&self.state.in_flight).get(&request_id).cloned();
        if let Some(call) = call {
            call.interrupt(Status::Cancelled, CANCELLED_MESSAGE);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

enum Deadline {
    None,
    Passed,
    At(Instant),
}

/// The call's deadline: its own (absolute, CLOCK_MONOTONIC), else the entry's default timeout
/// counted from arrival.
fn deadline_of(deadline_ns: u64, options: &EntryOptions, arrived: Instant) -> Deadline {
    if deadline_ns == 0 {
        return options
            .default_timeout()
            .map_or(Deadline::None, |timeout| Deadline::At(arrived + timeout));
    }
    let left = clock::until(deadline_ns);
    if left.is_zero() {
        Deadline::Passed
    } else {
        Deadline::At(Instant::now() + left)
    }
}
