//! Per-route metrics in the worker's Prometheus conventions: an HDR histogram of request
//! time per route (nanoseconds, exposed in seconds on the worker's buckets), a counter per
//! route and status, the requests in flight, and the metrics of the app's libraries (molt-db's
//! pool) after them, all in one text.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use molt_ipc_ring::lock::Mutex;
use molt_worker::metrics::{new_histogram, Exposition, Histogram, MetricKind, MetricsSource};

/// What one route recorded since start.
struct RouteStats {
    latency: Histogram<u64>,
    sum_ns: u64,
    /// Requests by HTTP status; [`CLIENT_CLOSED`] for a client that went away first.
    by_status: BTreeMap<u16, u64>,
}

/// The status key of requests whose client went away before the answer.
const CLIENT_CLOSED: u16 = 0;

/// The service's metrics; shared by the access-log layer and the metrics route.
pub(crate) struct WebMetrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
    in_flight: AtomicI64,
    sources: Vec<Arc<dyn MetricsSource>>,
}

impl WebMetrics {
    pub fn new(sources: Vec<Arc<dyn MetricsSource>>) -> Self {
        Self {
            routes: Mutex::new(BTreeMap::new()),
            in_flight: AtomicI64::new(0),
            sources,
        }
    }

    /// One request arrived; returns how many are in flight with it. Each request sees a
    /// count of its own, so comparing it with a limit admits at most that many at once.
    pub fn started(&self) -> i64 {
        // Relaxed: a counter; the read-modify-write alone makes the counts distinct, and it
        // orders no other memory.
        self.in_flight.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// One request of `route` ended with `status` after `elapsed` (`None`: its client went
    /// away first).
    pub fn ended(&self, route: &str, status: Option<StatusCode>, elapsed: Duration) {
        // Relaxed: as in `started`.
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let mut routes = self.routes.lock();
        if !routes.contains_key(route) {
            routes.insert(
                route.to_owned(),
                RouteStats {
                    latency: new_histogram(),
                    sum_ns: 0,
                    by_status: BTreeMap::new(),
                },
            );
        }
        let stats = routes.get_mut(route).expect("inserted above");
        // The histogram grows to fit; should growing fail, clamp rather than lose the sample.
        if stats.latency.record(ns).is_err() {
            stats.latency.saturating_record(ns);
        }
        stats.sum_ns = stats.sum_ns.saturating_add(ns);
        let key = status.map_or(CLIENT_CLOSED, |status| status.as_u16());
        *stats.by_status.entry(key).or_default() += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn prometheus_text(&self) -> String {
        let mut text = String::new();
        let mut out = Exposition::new(&mut text);
        {
            let routes = self.routes.lock();
            out.family(
                "molt_web_requests_total",
                MetricKind::Counter,
                "HTTP requests answered, by route and status (client_closed: the client went away first).",
            );
            for (route, stats) in routes.iter() {
                for (&status, count) in &stats.by_status {
                    let status = match status {
                        CLIENT_CLOSED => "client_closed".to_owned(),
                        status => status.to_string(),
                    };
                    out.sample(
                        "molt_web_requests_total",
                        &[("route", route), ("status", &status)],
                        count,
                    );
                }
            }
            out.family(
                "molt_web_request_seconds",
                MetricKind::Histogram,
                "Time from a request's arrival to its response, by route.",
            );
            for (route, stats) in routes.iter() {
                out.latency_histogram(
                    "molt_web_request_seconds",
                    &[("route", route)],
                    &stats.latency,
                    stats.sum_ns,
                );
            }
        }
        out.family(
            "molt_web_requests_in_flight",
            MetricKind::Gauge,
            "HTTP requests being handled now.",
        );
        // Relaxed: a gauge read.
        out.sample(
            "molt_web_requests_in_flight",
            &[],
            self.in_flight.load(Ordering::Relaxed),
        );
        for source in &self.sources {
            source.expose(&mut out);
        }
        text
    }
}
