//! What the worker does with each reply besides sending it: a trace line, and whatever else
//! is chained after it with [`Tee`] (the metrics recorder).

use molt_ipc_ring::frame::Status;

use crate::dispatcher::{ReplyObserver, Timings};

/// Logs every reply at trace level (`RUST_LOG=trace`), one line each.
pub struct TraceReplies;

impl ReplyObserver for TraceReplies {
    fn on_reply(&self, _entry: usize, name: &'static str, status: Status, timings: &Timings) {
        log::trace!(
            "{name} {} queue_ns={} exec_ns={} queue_depth={}",
            status.name(),
            timings.queue.as_nanos(),
            timings.exec.as_nanos(),
            timings.queue_depth
        );
    }
}

/// Two observers, each seeing every reply, the first one first.
pub struct Tee<A, B>(pub A, pub B);

impl<A: ReplyObserver, B: ReplyObserver> ReplyObserver for Tee<A, B> {
    fn on_reply(&self, entry: usize, name: &'static str, status: Status, timings: &Timings) {
        self.0.on_reply(entry, name, status, timings);
        self.1.on_reply(entry, name, status, timings);
    }
}
