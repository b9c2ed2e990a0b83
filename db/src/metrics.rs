//! What the database layer records: per-statement HDR histograms (execution time, rows),
//! the wait for a connection, pool gauges and counters; shown in the worker's Prometheus text
//! and interval log through [`MetricsSource`].

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use molt_ipc_ring::lock::Mutex;
use molt_worker::metrics::{new_histogram, Exposition, Histogram, MetricKind, MetricsSource};

use crate::conn::Outcome;

/// Bounds of the rows histogram.
const ROW_BOUNDS: [u64; 8] = [0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// A database's metrics; see [`Db::metrics`](crate::Db::metrics).
pub struct DbMetrics {
    pool: Option<Pool>,
    recorded: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    since_start: Stats,
    /// What the next interval of the log gets.
    since_interval: Stats,
}

struct Stats {
    wait: Histogram<u64>,
    wait_sum_ns: u64,
    acquire_timeouts: u64,
    discarded: u64,
    statements: BTreeMap<String, StatementStats>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            wait: new_histogram(),
            wait_sum_ns: 0,
            acquire_timeouts: 0,
            discarded: 0,
            statements: BTreeMap::new(),
        }
    }
}

struct StatementStats {
    exec: Histogram<u64>,
    exec_sum_ns: u64,
    rows: Histogram<u64>,
    rows_sum: u64,
    /// By [`Outcome`]: done, failed, cancelled.
    outcomes: [u64; 3],
}

impl Default for StatementStats {
    fn default() -> Self {
        Self {
            exec: new_histogram(),
            exec_sum_ns: 0,
            rows: new_histogram(),
            rows_sum: 0,
            outcomes: [0; 3],
        }
    }
}

impl DbMetrics {
    pub(crate) fn new(pool: Option<Pool>) -> Self {
        Self {
            pool,
            recorded: Mutex::new(Recorded::default()),
        }
    }

    fn record(&self, update: impl Fn(&mut Stats)) {
        let mut recorded = self.recorded.lock();
        update(&mut recorded.since_start);
        update(&mut recorded.since_interval);
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        let ns = nanos(waited);
        self.record(|stats| {
            saturating_record(&mut stats.wait, ns);
            stats.wait_sum_ns = stats.wait_sum_ns.wrapping_add(ns);
        });
    }

    pub(crate) fn record_acquire_timeout(&self) {
        self.record(|stats| stats.acquire_timeouts += 1);
    }

    pub(crate) fn record_discard(&self) {
        self.record(|stats| stats.discarded += 1);
    }

    pub(crate) fn record_statement(&self, name: &str, took: Duration, outcome: Outcome) {
        let ns = nanos(took);
        self.record(|stats| {
            let statement = statement_stats(stats, name);
            saturating_record(&mut statement.exec, ns);
            statement.exec_sum_ns = statement.exec_sum_ns.wrapping_add(ns);
            statement.outcomes[outcome as usize] += 1;
        });
    }

    pub(crate) fn record_rows(&self, name: &str, rows: usize) {
        let rows = u64::try_from(rows).unwrap_or(u64::MAX);
        self.record(|stats| {
            let statement = statement_stats(stats, name);
            saturating_record(&mut statement.rows, rows);
            statement.rows_sum = statement.rows_sum.wrapping_add(rows);
        });
    }
}

fn statement_stats<'s>(stats: &'s mut Stats, name: &str) -> &'s mut StatementStats {
    if !stats.statements.contains_key(name) {
        stats
            .statements
            .insert(name.to_owned(), StatementStats::default());
    }
    stats.statements.get_mut(name).expect("just inserted")
}

impl MetricsSource for DbMetrics {
    fn expose(&self, out: &mut Exposition<'_>) {
        let status = crate::pool::pool_status(self.pool.as_ref());
        out.family(
            "molt_db_pool_connections",
            MetricKind::Gauge,
            "Database connections open, by state.",
        );
        let busy = status.size.saturating_sub(status.idle);
        out.sample(
            "molt_db_pool_connections",
            &[("state", "idle")],
            status.idle,
        );
        out.sample("molt_db_pool_connections", &[("state", "in_use")], busy);
        out.family(
            "molt_db_pool_max_connections",
            MetricKind::Gauge,
            "The pool's size (pool_size).",
        );
        out.sample("molt_db_pool_max_connections", &[], status.max_size);
        out.family(
            "molt_db_pool_waiting",
            MetricKind::Gauge,
            "Calls waiting for a connection now.",
        );
        out.sample("molt_db_pool_waiting", &[], status.waiting);

        let recorded = self.recorded.lock();
        let stats = &recorded.since_start;
        out.family(
            "molt_db_acquire_wait_seconds",
            MetricKind::Histogram,
            "Time a call waited for a database connection.",
        );
        out.latency_histogram(
            "molt_db_acquire_wait_seconds",
            &[],
            &stats.wait,
            stats.wait_sum_ns,
        );
        out.family(
            "molt_db_acquire_timeouts_total",
            MetricKind::Counter,
            "Waits for a connection that ran out of time (answered Busy, or the call's Timeout).",
        );
        out.sample(
            "molt_db_acquire_timeouts_total",
            &[],
            stats.acquire_timeouts,
        );
        out.family(
            "molt_db_discarded_connections_total",
            MetricKind::Counter,
            "Connections closed instead of returned, because they did not become idle in time.",
        );
        out.sample("molt_db_discarded_connections_total", &[], stats.discarded);
        out.family(
            "molt_db_statements_total",
            MetricKind::Counter,
            "Statements by query and outcome (cancelled: cancelled on the server too).",
        );
        for (name, statement) in &stats.statements {
            for (outcome, count) in ["done", "failed", "cancelled"]
                .iter()
                .zip(statement.outcomes)
            {
                out.sample(
                    "molt_db_statements_total",
                    &[("query", name), ("outcome", outcome)],
                    count,
                );
            }
        }
        out.family(
            "molt_db_statement_seconds",
            MetricKind::Histogram,
            "Time from sending a statement to its last row (preparing it included, once per connection).",
        );
        for (name, statement) in &stats.statements {
            out.latency_histogram(
                "molt_db_statement_seconds",
                &[("query", name)],
                &statement.exec,
                statement.exec_sum_ns,
            );
        }
        out.family(
            "molt_db_statement_rows",
            MetricKind::Histogram,
            "Rows a query returned.",
        );
        for (name, statement) in &stats.statements {
            out.value_histogram(
                "molt_db_statement_rows",
                &[("query", name)],
                &statement.rows,
                &ROW_BOUNDS,
                statement.rows_sum,
            );
        }
    }

    fn take_interval(&self, out: &mut Vec<(String, Histogram<u64>)>) {
        let interval = std::mem::take(&mut self.recorded.lock().since_interval);
        out.push(("molt_db.acquire_wait".to_owned(), interval.wait));
        for (name, statement) in interval.statements {
            let tag = tag_safe(&name);
            out.push((format!("molt_db.{tag}.exec"), statement.exec));
            out.push((format!("molt_db.{tag}.rows"), statement.rows));
        }
    }
}

/// A query name as an interval-log tag: no commas, spaces or line breaks.
fn tag_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Records `value`, clamped to what the histogram can hold (it resizes up to u64 range).
fn saturating_record(histogram: &mut Histogram<u64>, value: u64) {
    histogram.saturating_record(value);
}
