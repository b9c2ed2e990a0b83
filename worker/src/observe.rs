//! What the worker does with each reply besides sending it: for now, a trace line.

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
