//! The seam through which a library the app uses (molt-db, molt-web) adds its own metrics to
//! the worker's: the same Prometheus text (`__metrics__`, `--metrics-listen`) and the same
//! interval log (`--metrics-dir`), in the same formats.

use std::fmt::Display;

use hdrhistogram::Histogram;

use super::prometheus;

/// Metrics of a library the app uses, shown with the worker's own. Register one at start-up
/// with [`Startup::add_metrics`](crate::Startup::add_metrics).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use molt_worker::metrics::{Exposition, Histogram, MetricKind, MetricsSource};
///
/// #[derive(Default)]
/// struct Cache { hits: AtomicU64 }
///
/// impl MetricsSource for Cache {
///     fn expose(&self, out: &mut Exposition<'_>) {
///         out.family("app_cache_hits_total", MetricKind::Counter, "Cache hits.");
///         out.sample("app_cache_hits_total", &[], self.hits.load(Ordering::Relaxed));
///     }
///     fn take_interval(&self, _out: &mut Vec<(String, Histogram<u64>)>) {}
/// }
///
/// let mut text = String::new();
/// Cache::default().expose(&mut Exposition::new(&mut text));
/// assert!(text.contains("app_cache_hits_total 0"));
/// ```
pub trait MetricsSource: Send + Sync + 'static {
    /// Appends this source's families to the Prometheus text: everything recorded since
    /// start. Name them with a prefix of the source's own (`molt_db_`).
    fn expose(&self, out: &mut Exposition<'_>);

    /// Appends what was recorded since the previous call, as `(tag, histogram)` pairs, for
    /// one interval of the log (tags like `molt_db.items_page.exec`: no commas or spaces),
    /// and starts the next interval. Called only when the worker logs intervals.
    fn take_interval(&self, out: &mut Vec<(String, Histogram<u64>)>);
}

/// The kind of a Prometheus metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, a sum and a count.
    Histogram,
}

/// Prometheus text (format 0.0.4) being written, with the worker's conventions: latency
/// histograms in seconds with the worker's buckets (1 µs to 60 s), computed from HDR
/// histograms of nanoseconds.
pub struct Exposition<'a> {
    out: &'a mut String,
}

impl<'a> Exposition<'a> {
    /// Writes into `out`.
    pub fn new(out: &'a mut String) -> Self {
        Self { out }
    }

    /// A family's `# HELP` and `# TYPE` lines; its samples follow.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) {
        let kind = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        prometheus::family(self.out, name, kind, help);
    }

    /// One sample line (label values are escaped).
    ///
    /// ```
    /// let mut text = String::new();
    /// molt_worker::metrics::Exposition::new(&mut text).sample("x_total", &[("query", "a\"b")], 3);
    /// assert_eq!(text, "x_total{query=\"a\\\"b\"} 3\n");
    /// ```
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        prometheus::line(self.out, name, labels, value);
    }

    /// A latency histogram's buckets, sum and count: `values` are nanoseconds, exposed in
    /// seconds on the worker's buckets; `sum_ns` is their exact sum.
    ///
    /// ```
    /// let mut values = molt_worker::metrics::new_histogram();
    /// values.record(1_500).unwrap();
    /// let mut text = String::new();
    /// molt_worker::metrics::Exposition::new(&mut text)
    ///     .latency_histogram("x_seconds", &[("query", "a")], &values, 1_500);
    /// assert!(text.contains("x_seconds_bucket{query=\"a\",le=\"0.0000025\"} 1"));
    /// assert!(text.contains("x_seconds_sum{query=\"a\"} 0.0000015"));
    /// ```
    pub fn latency_histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        values: &Histogram<u64>,
        sum_ns: u64,
    ) {
        prometheus::histogram(
            self.out,
            name,
            labels,
            values,
            &prometheus::LATENCY_BOUNDS_NS,
            prometheus::seconds,
            prometheus::seconds(sum_ns),
        );
    }

    /// A histogram of plain values (rows, bytes) on `bounds`, with their exact sum.
    pub fn value_histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        values: &Histogram<u64>,
        bounds: &[u64],
        sum: u64,
    ) {
        prometheus::histogram(
            self.out,
            name,
            labels,
            values,
            bounds,
            |bound| bound.to_string(),
            sum.to_string(),
        );
    }
}
