//! Prometheus text exposition (format 0.0.4) of the worker's counters, gauges and histograms.
//!
//! Latencies are exposed as Prometheus *histograms* (fixed `le` buckets), not summaries: a
//! deployment runs one worker per Django process, and only bucket counts can be summed across
//! processes and turned into fleet-wide quantiles over any window (`histogram_quantile` over
//! `rate(..._bucket[5m])`); a summary's quantiles cannot be combined. The exact per-process
//! tail lives in the `.hlog` dumps. Bucket counts come from the HDR histograms: a value is
//! counted under the first bound at or above the highest value its HDR bucket stands for, so a
//! sample under `le="x"` was at most `x` (bounds are exact to the histograms' 0.1%).

use std::fmt::Write;

use hdrhistogram::Histogram;
use molt_ipc_ring::frame::Status;

use super::histograms::{Sample, Series};

/// Upper bounds of the latency buckets, in nanoseconds: 1 µs to 60 s in 1-2.5-5 steps, which
/// spans an inline echo over shared memory and a compute call at its deadline.
pub(super) const LATENCY_BOUNDS_NS: [u64; 24] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// What the exposition shows besides the entries' samples.
pub struct Gauges {
    /// Calls waiting in the admission queue now.
    pub queue_depth: u32,
    /// The admission queue's length (`--max-queue`).
    pub queue_capacity: usize,
}

/// The exposition text: gauges, then (when recording) per-entry reply counters and latency
/// and queue-depth histograms, from `samples` accumulated since start.
pub fn render<'s>(
    gauges: &Gauges,
    samples: Option<impl IntoIterator<Item = (&'static str, &'s Sample)> + Clone>,
) -> String {
    let mut out = String::with_capacity(16 << 10);
    family(
        &mut out,
        "molt_worker_admission_queue_depth",
        "gauge",
        "Calls waiting in the admission queue for a compute thread.",
    );
    line(
        &mut out,
        "molt_worker_admission_queue_depth",
        &[],
        gauges.queue_depth,
    );
    family(
        &mut out,
        "molt_worker_admission_queue_capacity",
        "gauge",
        "Length of the admission queue (--max-queue); one more call is answered Busy.",
    );
    line(
        &mut out,
        "molt_worker_admission_queue_capacity",
        &[],
        gauges.queue_capacity,
    );
    let Some(samples) = samples else {
        out.push_str("# molt_worker: recording is off (--no-metrics)\n");
        return out;
    };

    family(
        &mut out,
        "molt_worker_replies_total",
        "counter",
        "Replies to calls of enabled entries, by entry and status.",
    );
    for (entry, sample) in samples.clone() {
        for status in Status::ALL {
            let count = sample.replies[status as usize];
            line(
                &mut out,
                "molt_worker_replies_total",
                &[("entry", entry), ("status", status.name())],
                count,
            );
        }
    }
    for (series, name, help) in [
        (
            Series::Queue,
            "molt_worker_queue_seconds",
            "Time from a call's arrival to the start of its execution (to its reply if it never ran).",
        ),
        (Series::Exec, "molt_worker_exec_seconds", "Time a call spent executing."),
        (
            Series::Total,
            "molt_worker_total_seconds",
            "Time from a call's arrival in the worker to its reply.",
        ),
    ] {
        family(&mut out, name, "histogram", help);
        for (entry, sample) in samples.clone() {
            histogram(
                &mut out,
                name,
                &[("entry", entry)],
                sample.histogram(series),
                &LATENCY_BOUNDS_NS,
                seconds,
                seconds(sample.sum(series)),
            );
        }
    }
    let depth_bounds = depth_bounds(gauges.queue_capacity);
    family(
        &mut out,
        "molt_worker_queue_depth_at_arrival",
        "histogram",
        "Admission queue depth each call found when it arrived.",
    );
    for (entry, sample) in samples {
        histogram(
            &mut out,
            "molt_worker_queue_depth_at_arrival",
            &[("entry", entry)],
            sample.histogram(Series::QueueDepth),
            &depth_bounds,
            |depth| depth.to_string(),
            sample.sum(Series::QueueDepth).to_string(),
        );
    }
    out
}

/// Bucket bounds for queue depths: 0, then powers of two up to the queue's capacity.
fn depth_bounds(capacity: usize) -> Vec<u64> {
    let capacity = u64::try_from(capacity).unwrap_or(u64::MAX);
    let mut bounds = vec![0];
    let mut bound = 1u64;
    while bound < capacity {
        bounds.push(bound);
        bound = bound.saturating_mul(2);
    }
    bounds.push(capacity);
    bounds
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub(super) fn line(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (index, (label, value)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and line feed (exposition format 0.0.4).
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One series' `_bucket` lines (cumulative, ending with `+Inf`), `_sum` and `_count`, each
/// with `labels` (and `le` on the buckets).
pub(super) fn histogram(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    values: &Histogram<u64>,
    bounds: &[u64],
    show_bound: impl Fn(u64) -> String,
    sum: String,
) {
    let mut in_bucket = vec![0u64; bounds.len()];
    for recorded in values.iter_recorded() {
        let highest = values.highest_equivalent(recorded.value_iterated_to());
        if let Some(bucket) = bounds.iter().position(|&bound| highest <= bound) {
            in_bucket[bucket] += recorded.count_at_value();
        }
    }
    let bucket_name = format!("{name}_bucket");
    let bucket_line = |out: &mut String, le: &str, count: u64| {
        let mut bucket_labels = labels.to_vec();
        bucket_labels.push(("le", le));
        line(out, &bucket_name, &bucket_labels, count);
    };
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(in_bucket) {
        cumulative += count;
        bucket_line(out, &show_bound(*bound), cumulative);
    }
    let total = values.len();
    bucket_line(out, "+Inf", total);
    line(out, &format!("{name}_sum"), labels, sum);
    line(out, &format!("{name}_count"), labels, total);
}

pub(super) fn seconds(nanos: u64) -> String {
    // f64 keeps nanoseconds exact up to 104 days; Display prints the shortest exact form.
    format!("{}", nanos as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::Timings;
    use std::time::Duration;

    fn sample_with(exec_ns: &[u64]) -> Sample {
        let mut sample = Sample::default();
        for &ns in exec_ns {
            sample.record(
                Status::Ok,
                &Timings {
                    queue: Duration::ZERO,
                    exec: Duration::from_nanos(ns),
                    queue_depth: 1,
                },
            );
        }
        sample
    }

    fn gauges() -> Gauges {
        Gauges {
            queue_depth: 3,
            queue_capacity: 64,
        }
    }

    fn value_of(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)?
                    .strip_prefix(' ')
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn buckets_are_cumulative_and_end_with_the_count() {
        let sample = sample_with(&[800, 2_000, 40_000, 70_000_000_000]);
        let text = render(&gauges(), Some([("echo", &sample)]));
        let bucket = |le: &str| {
            value_of(
                &text,
                &format!("molt_worker_exec_seconds_bucket{{entry=\"echo\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.000001"), "1");
        assert_eq!(bucket("0.0000025"), "2");
        assert_eq!(bucket("0.00005"), "3");
        assert_eq!(bucket("60"), "3", "70 s is above the last bound");
        assert_eq!(bucket("+Inf"), "4");
        assert_eq!(
            value_of(&text, "molt_worker_exec_seconds_count{entry=\"echo\"}"),
            "4"
        );
        assert_eq!(
            value_of(&text, "molt_worker_exec_seconds_sum{entry=\"echo\"}"),
            "70.0000428"
        );
    }

    #[test]
    fn every_status_has_a_counter_per_entry() {
        let sample = sample_with(&[1, 2]);
        let text = render(&gauges(), Some([("list_items", &sample)]));
        assert_eq!(
            value_of(
                &text,
                "molt_worker_replies_total{entry=\"list_items\",status=\"Ok\"}"
            ),
            "2"
        );
        assert_eq!(
            value_of(
                &text,
                "molt_worker_replies_total{entry=\"list_items\",status=\"Busy\"}"
            ),
            "0"
        );
        assert_eq!(
            text.matches("molt_worker_replies_total{").count(),
            Status::ALL.len()
        );
    }

    #[test]
    fn queue_depth_is_a_gauge_and_a_histogram_up_to_the_capacity() {
        let sample = sample_with(&[5]);
        let text = render(&gauges(), Some([("echo", &sample)]));
        assert_eq!(value_of(&text, "molt_worker_admission_queue_depth"), "3");
        assert_eq!(
            value_of(&text, "molt_worker_admission_queue_capacity"),
            "64"
        );
        let depth = |le: &str| {
            value_of(
                &text,
                &format!("molt_worker_queue_depth_at_arrival_bucket{{entry=\"echo\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(depth("0"), "0");
        assert_eq!(depth("1"), "1");
        assert_eq!(depth("64"), "1");
        assert_eq!(depth_bounds(64), [0, 1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(depth_bounds(5), [0, 1, 2, 4, 5]);
    }

    #[test]
    fn with_recording_off_only_the_gauges_show() {
        let text = render(&gauges(), None::<[(&'static str, &Sample); 0]>);
        assert!(text.contains("molt_worker_admission_queue_depth 3"));
        assert!(!text.contains("replies_total"));
        assert!(text.contains("recording is off"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\"b\\c\nd");
        assert_eq!(out, r#"a\"b\\c\nd"#);
    }
}
