//! What the worker does with each reply besides sending it: for now, a trace line.

use molt_ipc_ring::frame::{Metrics, Status};

use crate::dispatcher::ReplyObserver;

/// Logs every reply at trace level (`RUST_LOG=trace`), one line each.
pub struct TraceReplies;

impl ReplyObserver for TraceReplies {
    fn on_reply(&self, entry: &'static str, status: Status, metrics: &Metrics) {
        log::trace!(
            "{entry} {} queue_us={} exec_us={} queue_depth={}",
            status.name(),
            metrics.queue_us,
            metrics.exec_us,
            metrics.queue_depth
        );
    }
}
