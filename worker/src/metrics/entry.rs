//! `__metrics__`: the Prometheus text exposition as a call's result, so a client (the Django
//! integration) can re-export the worker's metrics without the worker opening a port.
//!
//! Always enabled, whatever the exports manifest says (which cannot name it): the text holds
//! entry names, counts and latencies, nothing a client that may call the worker could not
//! learn by calling it. It runs on the compute pool, not inline, because rendering walks every
//! histogram (tens to hundreds of microseconds) and must not hold up the transport's reader;
//! a concurrency limit of one keeps scrapes from ever holding more than one compute thread
//! (a second scrape at the same moment is answered Busy).

use std::sync::Arc;

use molt_ipc_ring::frame::Codec;

use super::WorkerMetrics;
use crate::entries::{CallContext, Entry, EntryError, EntryResult};
use crate::manifest::EntryOptions;

/// The name clients call it by.
pub const NAME: &str = "__metrics__";

/// Replies with the Prometheus text (codec Raw); the payload is ignored.
pub struct MetricsEntry {
    metrics: Arc<WorkerMetrics>,
}

impl MetricsEntry {
    /// The entry and its fixed options: one at a time, a 5 s default deadline, safe to retry.
    pub fn enabled(metrics: Arc<WorkerMetrics>) -> (Box<dyn Entry>, EntryOptions) {
        let options = EntryOptions {
            default_timeout_ms: Some(5_000),
            idempotent: true,
            max_concurrency: Some(1),
        };
        (Box::new(Self { metrics }), options)
    }
}

impl Entry for MetricsEntry {
    fn name(&self) -> &'static str {
        NAME
    }

    fn call(&self, ctx: &CallContext<'_>) -> EntryResult {
        if ctx.codec != Codec::Raw {
            return Err(EntryError::InvalidInput(
                "__metrics__ replies in raw (Prometheus text): set the call's codec to raw".into(),
            ));
        }
        Ok(self.metrics.prometheus_text().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::CancelToken;
    use crate::metrics::MetricsConfig;
    use std::time::Duration;

    fn call(entry: &dyn Entry, codec: Codec) -> EntryResult {
        entry.call(&CallContext {
            codec,
            payload: b"",
            cancel: &CancelToken::new(),
        })
    }

    #[test]
    fn replies_with_the_prometheus_text_in_raw_only() {
        let config = MetricsConfig {
            record: true,
            dir: None,
            interval: Duration::from_secs(10),
        };
        let metrics = WorkerMetrics::start(&config, vec!["echo", NAME], 4).unwrap();
        let (entry, options) = MetricsEntry::enabled(metrics);
        assert_eq!(entry.name(), "__metrics__");
        assert!(options.idempotent);
        assert_eq!(options.max_concurrency, Some(1));
        let text = String::from_utf8(call(entry.as_ref(), Codec::Raw).unwrap()).unwrap();
        assert!(text.contains("# TYPE molt_worker_replies_total counter"));
        assert!(text.contains("entry=\"__metrics__\""));
        assert!(matches!(
            call(entry.as_ref(), Codec::MsgPack),
            Err(EntryError::InvalidInput(_))
        ));
    }
}
