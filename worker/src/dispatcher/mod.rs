//! The dispatcher: turns request frames into exactly one reply each, whatever the transport.
//!
//! A transport opens a [`Session`] per client with a [`ReplySink`] and feeds it whole frames
//! with [`Session::submit`], a plain synchronous call that never blocks on a full queue and
//! may be made from any OS thread (the stdio reader thread, a shared-memory connection
//! thread). Replies, possibly out of order, go to the sink from whichever thread decides them.
//!
//! - Inline entries run on the submitting thread: no hop, no queue, no timer, no table.
//! - Pooled (sync) entries are admitted to a bounded queue (full: Busy at once) and run by a
//!   fixed pool of compute threads; the compute thread stays busy until the entry returns, so
//!   the pool stays bounded even for an entry that ignores its token. A call of a pooled
//!   entry whose recent calls ran short ([`INLINE_EXEC_LIMIT`]) runs on the submitting thread
//!   instead when nothing is queued and a compute slot is free: the hop to a compute thread
//!   (a wake-up, a context switch, the submitting thread going to sleep) would cost more
//!   than the call; its deadline, token and one reply work as on the pool.
//! - Async entries run as tasks on the tokio runtime, at most `max_async` at once; a fired
//!   token drops the entry's future.
//! - One timer task per runtime ([`deadline`]) answers Timeout at each call's deadline and
//!   fires its token. Completion, deadline, cancel frame and shutdown race for the call's
//!   once-flag ([`call`]); the winner sends the one reply.

mod admission;
mod call;
mod deadline;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::{self, Codec, DecodeError, Frame, Kind, Metrics, Status, HEADER_LEN};
use molt_ipc_ring::lock::Mutex;
use tokio::runtime::Handle;

use self::admission::AdmissionQueue;
use self::call::Call;
use self::deadline::Deadlines;
use crate::cancel::CancelToken;
use crate::clock;
use crate::ctx::CallScope;
use crate::entry::{self, Handler, Outcome};
use crate::manifest::EntryOptions;
use crate::payload::Payload;

/// Where a session's replies go. Called from any thread, once per reply, with the session's
/// table of calls locked: it must not block (copy the frame out, or queue it, and return). A
/// sink whose peer is gone drops the frame.
pub trait ReplySink: Send + Sync + 'static {
    /// Delivers one reply (or pong) to the peer.
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
    /// Compute threads running pooled entries.
    pub compute_threads: usize,
    /// Async calls in flight at once; one more is answered Busy.
    pub max_async: usize,
    /// Largest frame accepted, header included.
    pub max_frame_bytes: usize,
}

/// An entry the manifest enables, as the dispatcher runs it.
pub struct EnabledEntry {
    name: &'static str,
    handler: Handler,
    options: EntryOptions,
    /// Calls admitted and not yet done with the entry (queued or running). Kept at or below
    /// `options.max_concurrency` by `try_admit`.
    admitted: AtomicU32,
    /// Moving average of the pooled entry's recent execution times, in nanoseconds;
    /// `UNMEASURED` until its first call has run (which therefore always goes to the pool).
    recent_exec_ns: AtomicU64,
}

/// `EnabledEntry::recent_exec_ns` before any call has run.
const UNMEASURED: u64 = u64::MAX;

/// A pooled call runs on the submitting thread only if its entry's recent calls ran shorter
/// than this. It also bounds how long that thread (a shm connection's, the stdio reader)
/// reads nothing else from its client: a cancel or another call from the same client waits
/// about this long at most, typically; the deadline timer answers on time regardless.
pub const INLINE_EXEC_LIMIT: Duration = Duration::from_micros(500);

impl EnabledEntry {
    /// `handler` under `name`, with its manifest `options`.
    pub(crate) fn new(name: &'static str, handler: Handler, options: EntryOptions) -> Self {
        Self {
            name,
            handler,
            options,
            admitted: AtomicU32::new(0),
            recent_exec_ns: AtomicU64::new(UNMEASURED),
        }
    }

    /// The entry's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its name, handler and options, for [`embed`](crate::embed).
    pub(crate) fn into_parts(self) -> (&'static str, Handler, EntryOptions) {
        (self.name, self.handler, self.options)
    }

    /// The entry itself.
    pub(crate) fn handler(&self) -> &Handler {
        &self.handler
    }

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

    /// Whether the entry's recent calls ran short enough to run the next one inline.
    fn runs_short(&self) -> bool {
        // Relaxed: a heuristic; a stale average only sends one call the other way.
        self.recent_exec_ns.load(Ordering::Relaxed) < INLINE_EXEC_LIMIT.as_nanos() as u64
    }

    /// Folds one execution time into the moving average (weight 1/8: a few slow calls move
    /// the next ones to the pool).
    fn record_exec(&self, exec: Duration) {
        let sample = u64::try_from(exec.as_nanos()).unwrap_or(UNMEASURED - 1);
        // Relaxed: as in `runs_short`. Two threads recording at once may lose one sample,
        // which a moving average does not miss.
        let old = self.recent_exec_ns.load(Ordering::Relaxed);
        let new = if old == UNMEASURED {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.recent_exec_ns.store(new, Ordering::Relaxed);
    }
}

/// A pooled call waiting for a compute thread, with the payload it will be given.
struct PooledJob {
    call: Arc<Call>,
    payload: Vec<u8>,
}

/// Shared by every session; see the module docs.
pub struct Dispatcher {
    entries: Vec<EnabledEntry>,
    queue: AdmissionQueue<PooledJob>,
    runtime: Handle,
    deadlines: Arc<Deadlines>,
    observer: Box<dyn ReplyObserver>,
    max_frame_bytes: usize,
    /// Async calls spawned and not yet ended, at most `max_async`.
    async_calls: AtomicUsize,
    max_async: usize,
    /// Handed to inline entries: they finish before anything could cancel them.
    never_cancelled: CancelToken,
    pool: Mutex<Vec<JoinHandle<()>>>,
    compute_threads: usize,
    /// Pooled calls executing now, on compute threads or inline. A call runs inline only
    /// while this is below `compute_threads`, so at most `compute_threads` calls ever run
    /// inline at once, beside at most as many on the pool.
    executing: AtomicUsize,
}

impl Dispatcher {
    /// A dispatcher running `entries`, with its timer task and async entries on `runtime`,
    /// and its compute pool started.
    pub fn start(
        entries: Vec<EnabledEntry>,
        limits: Limits,
        runtime: Handle,
        observer: Box<dyn ReplyObserver>,
    ) -> std::io::Result<Arc<Self>> {
        let deadlines = Arc::new(Deadlines::default());
        runtime.spawn(Arc::clone(&deadlines).run());
        let dispatcher = Arc::new(Self {
            entries,
            queue: AdmissionQueue::new(limits.max_queue),
            runtime,
            deadlines,
            observer,
            max_frame_bytes: limits.max_frame_bytes,
            async_calls: AtomicUsize::new(0),
            max_async: limits.max_async,
            never_cancelled: CancelToken::new(),
            pool: Mutex::new(Vec::new()),
            compute_threads: limits.compute_threads,
            executing: AtomicUsize::new(0),
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
        *dispatcher.pool.lock() = pool;
        Ok(dispatcher)
    }

    /// Opens a session whose replies go to `sink`.
    pub fn connect(self: &Arc<Self>, sink: Arc<dyn ReplySink>) -> Session {
        Session {
            state: Arc::new(SessionState {
                dispatcher: Arc::clone(self),
                sink,
                in_flight: Mutex::new(HashMap::new()),
                open: AtomicBool::new(true),
            }),
        }
    }

    /// Stops the compute pool once the calls already queued have been dealt with, and waits
    /// for it. Sessions should be shut down first so that queued calls are skipped.
    pub fn stop(&self) {
        self.queue.close();
        let pool = std::mem::take(&mut *self.pool.lock());
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
        self.entries.iter().position(|enabled| enabled.name == name)
    }

    fn observe(&self, entry: usize, status: Status, timings: &Timings) {
        self.observer
            .on_reply(entry, self.entries[entry].name, status, timings);
    }

    /// The reply for an entry's outcome: its payload in the resolved codec, or a Raw message.
    /// A result too large for one frame is the worker's failure, not the caller's.
    fn reply_parts(&self, outcome: Outcome, call_codec: Codec) -> (Status, Codec, Vec<u8>) {
        match outcome {
            Ok(reply) => {
                let (codec, bytes) = reply.into_parts(call_codec);
                if HEADER_LEN + bytes.len() > self.max_frame_bytes {
                    log::error!(
                        "a result of {} bytes exceeds --max-frame-bytes; answered InternalError",
                        bytes.len()
                    );
                    let message = RESULT_TOO_LARGE_MESSAGE.as_bytes().to_vec();
                    return (Status::InternalError, Codec::Raw, message);
                }
                (Status::Ok, codec, bytes)
            }
            Err(err) => (err.status(), Codec::Raw, err.message().as_bytes().to_vec()),
        }
    }

    fn run_compute_thread(&self) {
        while let Some(job) = self.queue.pop() {
            // Relaxed: a counter bounding inline runs; it guards no data.
            self.executing.fetch_add(1, Ordering::Relaxed);
            self.run_pooled(job);
            self.executing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs a pooled call on the calling thread if that is cheaper than the hop and allowed:
    /// its entry runs short, no call is queued ahead of it, and fewer than `compute_threads`
    /// pooled calls execute. Hands the job back otherwise.
    fn try_run_inline(&self, job: PooledJob) -> Result<(), PooledJob> {
        if !self.entries[job.call.entry].runs_short() || self.queue.depth() > 0 {
            return Err(job);
        }
        // Relaxed: see `executing`.
        let took_slot = self
            .executing
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.compute_threads).then_some(n + 1)
            })
            .is_ok();
        if !took_slot {
            return Err(job);
        }
        self.run_pooled(job);
        self.executing.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs one admitted call and gives its concurrency slot back as soon as the entry is
    /// done with it: before the reply goes out, so a client that sends its next call on
    /// seeing the reply never finds the slot still taken. A call that timed out or was
    /// cancelled while running keeps its slot until the entry actually returns.
    fn run_pooled(&self, PooledJob { call, payload }: PooledJob) {
        let enabled = &self.entries[call.entry];
        let Handler::Pooled(handler) = &enabled.handler else {
            unreachable!("only pooled entries are queued");
        };
        if call.has_replied() {
            enabled.release();
            return;
        }
        if call
            .scope
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            enabled.release();
            call.finish(Status::Timeout, Codec::Raw, TIMEOUT_MESSAGE.as_bytes());
            return;
        }
        call.mark_started();
        let codec = call.scope.codec;
        let started = Instant::now();
        let outcome = entry::run_sync(
            handler,
            Payload::new(codec, payload),
            Arc::clone(&call.scope),
        );
        enabled.record_exec(started.elapsed());
        enabled.release();
        let (status, codec, bytes) = self.reply_parts(outcome, codec);
        call.finish(status, codec, &bytes);
    }

    /// Takes a slot among the async calls in flight, if one is free.
    fn try_admit_async(&self) -> bool {
        // Relaxed: a counter, as for `EnabledEntry::try_admit`.
        self.async_calls
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_async).then_some(n + 1)
            })
            .is_ok()
    }

    /// Runs an admitted async call as a task: its future races the call's token, and loses
    /// it to a Cancel frame, the deadline, the client going away or shutdown (whose reply is
    /// already out), which drops the entry's future.
    fn spawn_async(self: &Arc<Self>, call: Arc<Call>, payload: Vec<u8>) {
        let dispatcher = Arc::clone(self);
        self.runtime.spawn(async move {
            let enabled = &dispatcher.entries[call.entry];
            let Handler::Async(handler) = &enabled.handler else {
                unreachable!("only async entries are spawned");
            };
            let scope = &call.scope;
            let outcome = if scope.cancel.is_cancelled() {
                None
            } else {
                call.mark_started();
                let future = handler(Payload::new(scope.codec, payload), Arc::clone(scope));
                tokio::select! {
                    biased;
                    () = scope.cancel.cancelled() => None,
                    outcome = entry::run_async(future, scope.request_id, scope.entry) => Some(outcome),
                }
            };
            enabled.release();
            // Relaxed: see `try_admit_async`.
            dispatcher.async_calls.fetch_sub(1, Ordering::Relaxed);
            if let Some(outcome) = outcome {
                let (status, codec, bytes) = dispatcher.reply_parts(outcome, scope.codec);
                call.finish(status, codec, &bytes);
            }
        });
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.queue.close();
    }
}

const TIMEOUT_MESSAGE: &str = "deadline exceeded";
const RESULT_TOO_LARGE_MESSAGE: &str = "internal error: the result is too large for one frame";
const CANCELLED_MESSAGE: &str = "cancelled";
const SHUTDOWN_MESSAGE: &str = "cancelled: the worker is shutting down";

/// Microseconds in a `u32` metric, saturating (71 minutes).
fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// State shared by a session and its calls in flight.
pub struct SessionState {
    dispatcher: Arc<Dispatcher>,
    sink: Arc<dyn ReplySink>,
    /// Pooled and async calls that have not replied yet, by request id. Replies are sent
    /// with it locked (see `Call::finish`).
    in_flight: Mutex<HashMap<u64, Arc<Call>>>,
    /// False once the peer is gone: replies are dropped instead of sent.
    open: AtomicBool,
}

impl SessionState {
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
    fn take_in_flight(&self) -> Vec<Arc<Call>> {
        self.in_flight
            .lock()
            .drain()
            .map(|(_, call)| call)
            .collect()
    }
}

/// One client's session with the dispatcher. Dropping it closes it: calls in flight are
/// cancelled and their replies dropped.
pub struct Session {
    state: Arc<SessionState>,
}

impl Session {
    /// Handles one whole frame from the peer. Errors that concern one request are answered on
    /// the session; an error that means the stream cannot be trusted any more is returned,
    /// and the transport should end the session with [`Session::fail_stream`].
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

    /// Answers every call in flight Cancelled (their tokens fire); the session stays open so
    /// those replies reach the peer. Once it returns, every reply already chosen has been
    /// handed to the sink. For a peer that is going away in good order.
    pub fn shutdown(&self) {
        for call in self.state.take_in_flight() {
            call.interrupt(Status::Cancelled, SHUTDOWN_MESSAGE);
        }
    }

    /// Ends a session whose stream broke: in-flight calls are answered as by
    /// [`Session::shutdown`], then one ProtocolError with request id 0 says why, then the
    /// session closes.
    pub fn fail_stream(&self, reason: &str) {
        self.shutdown();
        self.state
            .send_error(0, Status::ProtocolError, reason, self.idle_metrics());
        self.close();
    }

    /// Closes the session: calls in flight are cancelled and their replies dropped.
    pub fn close(&self) {
        // Relaxed: see `SessionState::send`.
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
        let dispatcher = &state.dispatcher;
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
        if let Some(max) = enabled.options.max_payload_bytes {
            if frame.payload.len() as u64 > max {
                let message = format!(
                    "the payload of {} bytes exceeds {}'s max_payload_bytes ({max})",
                    frame.payload.len(),
                    enabled.name
                );
                return reject(Status::InvalidInput, &message);
            }
        }
        let is_async = matches!(enabled.handler, Handler::Async(_));
        if is_async && !dispatcher.try_admit_async() {
            return reject(
                Status::Busy,
                "busy: the worker is at its limit of async calls",
            );
        }
        if !enabled.try_admit() {
            if is_async {
                // Relaxed: see `Dispatcher::try_admit_async`.
                dispatcher.async_calls.fetch_sub(1, Ordering::Relaxed);
            }
            return reject(Status::Busy, "busy: the entry is at its concurrency limit");
        }
        let scope = CallScope {
            request_id: frame.request_id,
            entry: enabled.name,
            codec: frame.codec,
            deadline,
            cancel: dispatcher.never_cancelled.clone(),
        };
        if let Handler::Inline(handler) = &enabled.handler {
            return self.run_inline(handler, index, frame, scope, arrived, queue_depth);
        }
        let scope = CallScope {
            cancel: CancelToken::new(),
            ..scope
        };
        let timer = deadline.map(|deadline| dispatcher.deadlines.key(deadline));
        let call = Arc::new(Call::new(
            index,
            scope,
            timer,
            arrived,
            queue_depth,
            Arc::clone(state),
        ));
        {
            let mut in_flight = state.in_flight.lock();
            if in_flight.contains_key(&frame.request_id) {
                drop(in_flight);
                enabled.release();
                if is_async {
                    // Relaxed: see `Dispatcher::try_admit_async`.
                    dispatcher.async_calls.fetch_sub(1, Ordering::Relaxed);
                }
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
        // Armed before the call can run, so a call that finishes at once finds its timer
        // there to remove.
        if let Some(key) = timer {
            dispatcher.deadlines.insert(key, Arc::clone(&call));
        }
        let payload = frame.payload.to_vec();
        if is_async {
            dispatcher.spawn_async(call, payload);
            return;
        }
        let Err(job) = dispatcher.try_run_inline(PooledJob { call, payload }) else {
            return;
        };
        if let Err(job) = dispatcher.queue.try_push(job) {
            enabled.release();
            // Through `finish`, not a direct reply: the call is in the table, so a shutdown on
            // another thread may have answered it Cancelled already; one reply only.
            job.call.finish(
                Status::Busy,
                Codec::Raw,
                b"busy: the admission queue is full",
            );
        }
    }

    fn run_inline(
        &self,
        handler: &entry::SyncFn,
        index: usize,
        frame: &Frame<'_>,
        scope: CallScope,
        arrived: Instant,
        queue_depth: u32,
    ) {
        let dispatcher = &self.state.dispatcher;
        let started = Instant::now();
        let payload = Payload::new(frame.codec, frame.payload.to_vec());
        let outcome = entry::run_sync(handler, payload, Arc::new(scope));
        // As for pooled calls: the slot is free before the reply goes out.
        dispatcher.entries[index].release();
        let timings = Timings {
            queue: started - arrived,
            exec: started.elapsed(),
            queue_depth,
        };
        let (status, codec, bytes) = dispatcher.reply_parts(outcome, frame.codec);
        dispatcher.observe(index, status, &timings);
        self.state.send(
            &Frame::reply(frame.request_id, status, codec, &bytes).with_metrics(timings.metrics()),
        );
    }

    fn cancel(&self, request_id: u64) {
        // A cancel of a call that already replied, or never existed, is ignored (protocol.md).
        let call = self.state.in_flight.lock().get(&request_id).cloned();
        if let Some(call) = call {
            call.interrupt(Status::Cancelled, CANCELLED_MESSAGE);
        }
    }
}

impl Drop for Session {
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
