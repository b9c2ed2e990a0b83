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
use crate::dispatcher::EnabledEntry;
use crate::entry::Handler;
use crate::error::EntryError;
use crate::manifest::EntryOptions;
use crate::payload::{Payload, Reply};

/// The name clients call it by.
pub const NAME: &str = "__metrics__";

/// The entry, with its fixed options: one at a time, a 5 s default deadline, safe to retry.
/// Replies with the Prometheus text (codec Raw); the payload is ignored.
pub fn enabled(metrics: Arc<WorkerMetrics>) -> EnabledEntry {
    let options = EntryOptions {
        default_timeout_ms: Some(5_000),
        idempotent: true,
        max_concurrency: Some(1),
        max_payload_bytes: None,
    };
    let handler = Handler::Pooled(Box::new(move |payload: Payload, _scope| {
        scrape(&metrics, payload.codec())
    }));
    EnabledEntry::new(NAME, handler, options)
}

fn scrape(metrics: &WorkerMetrics, codec: Codec) -> Result<Reply, EntryError> {
    if codec != Codec::Raw {
        return Err(EntryError::InvalidInput(
            "__metrics__ replies in raw (Prometheus text): set the call's codec to raw".into(),
        ));
    }
    Ok(Reply::raw(metrics.prometheus_text().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsConfig;
    use std::time::Duration;

    #[test]
    fn replies_with_the_prometheus_text_in_raw_only() {
        let config = MetricsConfig {
            record: true,
            dir: None,
            interval: Duration::from_secs(10),
        };
        let metrics = WorkerMetrics::start(&config, vec!["echo", NAME], 4, Vec::new()).unwrap();
        let entry = enabled(Arc::clone(&metrics));
        assert_eq!(entry.name(), "__metrics__");
        let reply = scrape(&metrics, Codec::Raw).unwrap();
        let text = std::str::from_utf8(reply.bytes()).unwrap();
        assert!(text.contains("# TYPE molt_worker_replies_total counter"));
        assert!(text.contains("entry=\"__metrics__\""));
        assert!(matches!(
            scrape(&metrics, Codec::MsgPack),
            Err(EntryError::InvalidInput(_))
        ));
    }
}
