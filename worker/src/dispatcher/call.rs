//! One call on its way through the compute pool, and the once-flag that makes its reply the
//! only one: completion, deadline, cancel and shutdown all race to [`PooledCall::finish`],
//! and the first one wins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::{Codec, Frame, Status};

use super::{ConnectionState, Timings};
use crate::cancel::CancelToken;

/// A call admitted to the compute pool.
pub struct PooledCall {
    pub request_id: u64,
    /// Index into the dispatcher's enabled entries.
    pub entry: usize,
    pub codec: Codec,
    pub payload: Vec<u8>,
    /// When the call's time is up, if it has a deadline.
    pub deadline: Option<Instant>,
    pub arrived: Instant,
    pub queue_depth: u32,
    pub token: CancelToken,
    pub connection: Arc<ConnectionState>,
    /// The once-flag: false until a reply has been chosen.
    replied: AtomicBool,
    /// Nanoseconds from `arrived` to the start of execution; `NOT_STARTED` until then.
    started_after_ns: AtomicU64,
    /// The deadline timer, aborted when another outcome wins. Empty when the call has no
    /// deadline or has replied.
    timer: Mutex<Option<tokio::task::AbortHandle>>,
}

const NOT_STARTED: u64 = u64::MAX;

/// The calls of one connection that have not replied yet, by request id.
pub type InFlight = Mutex<HashMap<u64, Arc<PooledCall>>>;

impl PooledCall {
    /// A call that has not started, has no timer and has not replied.
    pub fn new(
        entry: usize,
        frame: &Frame<'_>,
        deadline: Option<Instant>,
        arrived: Instant,
        queue_depth: u32,
        connection: Arc<ConnectionState>,
    ) -> Self {
        Self {
            request_id: frame.request_id,
            entry,
            codec: frame.codec,
            payload: frame.payload.to_vec(),
            deadline,
            arrived,
            queue_depth,
            token: CancelToken::new(),
            connection,
            replied: AtomicBool::new(false),
            started_after_ns: AtomicU64::new(NOT_STARTED),
            timer: Mutex::new(None),
        }
    }

    /// Whether an outcome has already been chosen (the entry then need not run).
    pub fn has_replied(&self) -> bool {
        // Relaxed: an early-out hint only; `finish` decides for real.
        self.replied.load(Ordering::Relaxed)
    }

    /// Records the start of execution, for `queue_us` and `exec_us`.
    pub fn mark_started(&self) {
        let after = u64::try_from(self.arrived.elapsed().as_nanos()).unwrap_or(NOT_STARTED - 1);
        // Relaxed: read back only for metrics; a stale value would skew one reply's timings.
        self.started_after_ns.store(after, Ordering::Relaxed);
    }

    /// Arms `timer` as this call's deadline timer, unless the call has replied already (then
    /// the timer is aborted at once). `finish` sets the flag before taking the timer lock, so
    /// whichever of the two takes the lock second sees the other's work.
    pub fn arm_timer(&self, spawn: impl FnOnce() -> tokio::task::AbortHandle) {
        let mut slot = lock(&self.timer);
        if !self.has_replied() {
            *slot = Some(spawn());
        }
    }

    /// Answers the call with `status` (a Raw `message`) unless it has replied already, then
    /// fires its token so a running entry stops. The reply comes first: an entry woken by its
    /// token returns Cancelled, which must find the outcome (say, Timeout) already chosen.
    pub fn interrupt(&self, status: Status, message: &str) {
        self.finish(status, Codec::Raw, message.as_bytes());
        self.token.cancel();
    }

    /// Sends this call's one reply, unless another outcome got there first.
    pub fn finish(&self, status: Status, codec: Codec, payload: &[u8]) {
        // Held from choosing the reply until the sink has it: `Connection::shutdown` drains
        // the table under this lock, so once it returns every reply already chosen has been
        // sent, and the transport may close its sink without losing one.
        let mut in_flight = lock(&self.connection.in_flight);
        // Relaxed: the swap alone picks one winner (read-modify-writes of one atomic are
        // totally ordered); no data is handed over through the flag.
        if self.replied.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(timer) = lock(&self.timer).take() {
            timer.abort();
        }
        in_flight.remove(&self.request_id);
        let timings = self.timings();
        let connection = &self.connection;
        connection.dispatcher.observe(self.entry, status, &timings);
        connection.send(
            &Frame::reply(self.request_id, status, codec, payload).with_metrics(timings.metrics()),
        );
    }

    fn timings(&self) -> Timings {
        let now = self.arrived.elapsed();
        // Relaxed: see `mark_started`.
        let started = self.started_after_ns.load(Ordering::Relaxed);
        if started == NOT_STARTED {
            return Timings {
                queue: now,
                exec: Duration::ZERO,
                queue_depth: self.queue_depth,
            };
        }
        let queue = Duration::from_nanos(started);
        Timings {
            queue,
            exec: now.saturating_sub(queue),
            queue_depth: self.queue_depth,
        }
    }
}

/// Locks a mutex that no code panics under; recovers it if one somehow did, so that a reply
/// is never lost to poisoning.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
