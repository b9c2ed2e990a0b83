//! One pooled or async call in flight, and the once-flag that makes its reply the only one:
//! completion, deadline, cancel and shutdown all race to [`Call::finish`], and the first one
//! wins.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::{Codec, Frame, Status};

use super::deadline::TimerKey;
use super::{SessionState, Timings};
use crate::ctx::CallScope;

/// A call admitted to the compute pool or the async runtime.
pub struct Call {
    /// What the entry sees: request id, codec, deadline, token.
    pub scope: Arc<CallScope>,
    /// Index into the dispatcher's enabled entries.
    pub entry: usize,
    arrived: Instant,
    queue_depth: u32,
    /// Where the call sits in the deadline timer, if it has a deadline.
    timer: Option<TimerKey>,
    session: Arc<SessionState>,
    /// The once-flag: false until a reply has been chosen.
    replied: AtomicBool,
    /// Nanoseconds from `arrived` to the start of execution; `NOT_STARTED` until then.
    started_after_ns: AtomicU64,
}

const NOT_STARTED: u64 = u64::MAX;

impl Call {
    /// A call that has not started and has not replied.
    pub fn new(
        entry: usize,
        scope: CallScope,
        timer: Option<TimerKey>,
        arrived: Instant,
        queue_depth: u32,
        session: Arc<SessionState>,
    ) -> Self {
        Self {
            scope: Arc::new(scope),
            entry,
            arrived,
            queue_depth,
            timer,
            session,
            replied: AtomicBool::new(false),
            started_after_ns: AtomicU64::new(NOT_STARTED),
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

    /// Answers the call with `status` (a Raw `message`) unless it has replied already, then
    /// fires its token so a running entry stops. The reply comes first: an entry woken by its
    /// token returns Cancelled, which must find the outcome (say, Timeout) already chosen.
    pub fn interrupt(&self, status: Status, message: &str) {
        self.finish(status, Codec::Raw, message.as_bytes());
        self.scope.cancel.cancel();
    }

    /// Sends this call's one reply, unless another outcome got there first.
    pub fn finish(&self, status: Status, codec: Codec, payload: &[u8]) {
        let session = &self.session;
        {
            // Held from choosing the reply until the sink has it: `Session::shutdown` drains
            // the table under this lock, so once it returns every reply already chosen has
            // been handed to the sink, and the transport may flush and close it without losing
            // one. Sinks never block, so the lock is held for a copy at most.
            let mut in_flight = session.in_flight.lock();
            // Relaxed: the swap alone picks one winner (read-modify-writes of one atomic are
            // totally ordered); no data is handed over through the flag.
            if self.replied.swap(true, Ordering::Relaxed) {
                return;
            }
            in_flight.remove(&self.scope.request_id);
            let timings = self.timings();
            session.dispatcher.observe(self.entry, status, &timings);
            session.send(
                &Frame::reply(self.scope.request_id, status, codec, payload)
                    .with_metrics(timings.metrics()),
            );
        }
        if let Some(key) = self.timer {
            session.dispatcher.deadlines.remove(key);
        }
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
