//! The recording side: per-entry HDR histograms and reply counters, written on the reply path
//! and harvested by the dump and exposition code.
//!
//! Each entry has one [`Sample`] behind its own `Mutex`. A reply locks it, records four values
//! and bumps a counter: no allocation once the histograms have grown to the values seen, and
//! the lock is uncontended unless two threads finish calls of the same entry in the same few
//! tens of nanoseconds. Harvesting swaps the live sample with an empty spare under that lock
//! (two pointer swaps per histogram) and does the adding and clearing outside it, so a dump
//! never stalls a reply for longer than the swap.
//!
//! Per-thread recorders (hdrhistogram's `sync` module) would avoid even that lock, but they
//! need every recording thread to take part in each harvest; replies are decided on the stdio
//! reader, the compute pool and the timer thread alike, and the measured cost of the mutex is
//! small next to a round trip (docs/operations.md), so the simpler scheme wins.

use molt_ipc_ring::lock::Mutex;

use hdrhistogram::Histogram;
use molt_ipc_ring::frame::Status;

use crate::dispatcher::{ReplyObserver, Timings};

/// Significant decimal digits every histogram keeps: values are exact to 0.1%.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// One of an entry's histograms. Times are in nanoseconds; depths in calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// From a call's arrival to the start of its execution.
    Queue,
    /// Spent executing.
    Exec,
    /// Queue plus exec: arrival to reply.
    Total,
    /// Admission queue depth seen by the arriving call.
    QueueDepth,
}

impl Series {
    /// Every series, in the order [`Sample::histograms`] keeps them.
    pub const ALL: [Series; 4] = [Self::Queue, Self::Exec, Self::Total, Self::QueueDepth];

    /// The suffix of the series' interval-log tag (`list_items.total`).
    pub fn tag_suffix(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Exec => "exec",
            Self::Total => "total",
            Self::QueueDepth => "queue_depth",
        }
    }
}

/// An empty histogram with the worker's settings: 3 significant digits, growing to fit the
/// largest value recorded (so an entry that only ever takes microseconds stays small).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is a valid precision")
}

/// What one entry recorded over some span of time.
#[derive(Clone, Debug)]
pub struct Sample {
    /// One histogram per [`Series`], in [`Series::ALL`] order.
    pub histograms: [Histogram<u64>; 4],
    /// Exact sum of each series' values (the histograms keep values to 0.1% only), for the
    /// Prometheus `_sum`. Wraps after 584 years of nanoseconds.
    pub sums: [u64; 4],
    /// Replies by status, indexed by the status's wire value.
    pub replies: [u64; Status::ALL.len()],
}

impl Default for Sample {
    fn default() -> Self {
        Self {
            histograms: std::array::from_fn(|_| new_histogram()),
            sums: [0; 4],
            replies: [0; Status::ALL.len()],
        }
    }
}

impl Sample {
    /// Records one reply.
    pub fn record(&mut self, status: Status, timings: &Timings) {
        let values = [
            nanos(timings.queue),
            nanos(timings.exec),
            nanos(timings.queue).saturating_add(nanos(timings.exec)),
            u64::from(timings.queue_depth),
        ];
        for ((histogram, sum), value) in self.histograms.iter_mut().zip(&mut self.sums).zip(values)
        {
            record(histogram, value);
            *sum = sum.wrapping_add(value);
        }
        self.replies[status as usize] += 1;
    }

    /// Adds `other`'s values and counts to this sample's.
    pub fn add(&mut self, other: &Sample) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            // Both histograms auto-resize with the same precision: adding cannot fail.
            mine.add(theirs).expect("histograms of equal precision add");
        }
        for (mine, theirs) in self.sums.iter_mut().zip(other.sums) {
            *mine = mine.wrapping_add(theirs);
        }
        for (mine, theirs) in self.replies.iter_mut().zip(other.replies) {
            *mine += theirs;
        }
    }

    /// Forgets every value, keeping the histograms' allocations.
    pub fn clear(&mut self) {
        for histogram in &mut self.histograms {
            histogram.reset();
        }
        self.sums = [0; 4];
        self.replies = [0; Status::ALL.len()];
    }

    /// Replies counted, whatever their status.
    #[cfg(test)]
    pub fn reply_count(&self) -> u64 {
        self.replies.iter().sum()
    }

    /// The histogram of `series`.
    pub fn histogram(&self, series: Series) -> &Histogram<u64> {
        &self.histograms[series as usize]
    }

    /// The exact sum of `series`' values.
    pub fn sum(&self, series: Series) -> u64 {
        self.sums[series as usize]
    }
}

/// Records `value`, which an auto-resizing histogram always takes; should growing ever fail,
/// the value is clamped to the current range rather than lost.
fn record(histogram: &mut Histogram<u64>, value: u64) {
    if histogram.record(value).is_err() {
        histogram.saturating_record(value);
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The live samples of every enabled entry; the dispatcher's [`ReplyObserver`].
pub struct Recorder {
    names: Vec<&'static str>,
    live: Vec<Mutex<Sample>>,
}

impl Recorder {
    /// A recorder for the enabled entries `names`, in the order the dispatcher indexes them.
    pub fn new(names: Vec<&'static str>) -> Self {
        let live = names
            .iter()
            .map(|_| Mutex::new(Sample::default()))
            .collect();
        Self { names, live }
    }

    /// The entries' names, in index order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Moves everything entry `index` recorded since the last call into `spare`, which must
    /// be empty, leaving `spare`'s old (empty) histograms to record into.
    pub fn swap_out(&self, index: usize, spare: &mut Sample) {
        std::mem::swap(&mut *self.live[index].lock(), spare);
    }
}

impl ReplyObserver for Recorder {
    fn on_reply(&self, entry: usize, _name: &'static str, status: Status, timings: &Timings) {
        // The dispatcher only reports entries it was started with, the same list as `names`.
        if let Some(live) = self.live.get(entry) {
            live.lock().record(status, timings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn timings(queue_ns: u64, exec_ns: u64, queue_depth: u32) -> Timings {
        Timings {
            queue: Duration::from_nanos(queue_ns),
            exec: Duration::from_nanos(exec_ns),
            queue_depth,
        }
    }

    #[test]
    fn a_reply_is_recorded_in_every_series_and_counted_by_status() {
        let mut sample = Sample::default();
        sample.record(Status::Ok, &timings(1_500, 20_000, 3));
        sample.record(Status::Busy, &timings(0, 0, 64));
        assert_eq!(sample.replies[Status::Ok as usize], 1);
        assert_eq!(sample.replies[Status::Busy as usize], 1);
        assert_eq!(sample.reply_count(), 2);
        for series in Series::ALL {
            assert_eq!(sample.histogram(series).len(), 2, "{series:?}");
        }
        assert_eq!(
            sample.histogram(Series::Total).max(),
            sample.histogram(Series::Total).highest_equivalent(21_500)
        );
        assert_eq!(sample.sum(Series::Total), 21_500);
        assert_eq!(sample.sum(Series::QueueDepth), 67);
    }

    #[test]
    fn values_keep_three_significant_digits() {
        let mut sample = Sample::default();
        sample.record(Status::Ok, &timings(0, 123_456_789, 0));
        let recorded = sample.histogram(Series::Exec).max();
        assert!(
            recorded.abs_diff(123_456_789) <= 123_456_789 / 1000,
            "{recorded}"
        );
    }

    #[test]
    fn very_long_calls_are_recorded_not_dropped() {
        let mut sample = Sample::default();
        sample.record(
            Status::Timeout,
            &timings(u64::MAX / 4, u64::MAX / 4, u32::MAX),
        );
        assert_eq!(sample.histogram(Series::Total).len(), 1);
    }

    #[test]
    fn adding_samples_adds_counts_sums_and_histograms() {
        let mut total = Sample::default();
        let mut part = Sample::default();
        part.record(Status::Ok, &timings(10, 20, 1));
        total.add(&part);
        total.add(&part);
        assert_eq!(total.reply_count(), 2);
        assert_eq!(total.sum(Series::Exec), 40);
        assert_eq!(total.histogram(Series::Queue).len(), 2);
        total.clear();
        assert_eq!(total.reply_count(), 0);
        assert_eq!(total.histogram(Series::Queue).len(), 0);
    }

    #[test]
    fn swapping_out_hands_over_what_was_recorded_and_starts_afresh() {
        let recorder = Recorder::new(vec!["echo", "compute"]);
        recorder.on_reply(1, "compute", Status::Ok, &timings(5, 5, 0));
        recorder.on_reply(1, "compute", Status::Ok, &timings(5, 5, 0));
        let mut spare = Sample::default();
        recorder.swap_out(1, &mut spare);
        assert_eq!(spare.reply_count(), 2);
        spare.clear();
        recorder.swap_out(1, &mut spare);
        assert_eq!(spare.reply_count(), 0);
        recorder.swap_out(0, &mut spare);
        assert_eq!(spare.reply_count(), 0);
    }

    #[test]
    fn an_index_outside_the_entry_list_is_ignored() {
        let recorder = Recorder::new(vec!["echo"]);
        recorder.on_reply(7, "ghost", Status::Ok, &timings(1, 1, 0));
        let mut spare = Sample::default();
        recorder.swap_out(0, &mut spare);
        assert_eq!(spare.reply_count(), 0);
    }
}
