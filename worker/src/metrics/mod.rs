//! Worker metrics: per-entry HDR histograms of queue, exec and total time (nanoseconds, 3
//! significant digits) and of the admission queue depth at arrival, reply counters by entry
//! and status, and the queue-depth gauge.
//!
//! - Recording ([`histograms`]) happens on the reply path, through the dispatcher's
//!   [`ReplyObserver`] seam.
//! - [`WorkerMetrics::harvest`] moves what was recorded into a running total (for Prometheus)
//!   and, with `--metrics-dir`, into the interval being logged.
//! - With `--metrics-dir`, a `molt-metrics` thread appends an interval to the run's `.hlog`
//!   ([`hlog`]) every `--metrics-interval`, on SIGUSR1 ([`WorkerMetrics::request_dump`]) and
//!   once more at exit ([`WorkerMetrics::finish`]).
//! - [`prometheus`] renders the text exposition, served by the `__metrics__` entry
//!   ([`entry`]) and, with `--metrics-listen`, over HTTP ([`http`]).
//!
//! - A library the app uses adds metrics of its own through [`MetricsSource`], registered
//!   with `Startup::add_metrics`: shown in the same text and logged in the same intervals.
//!
//! See docs/operations.md for how to read all of it. Public: [`MetricsSource`],
//! [`Exposition`], [`MetricKind`], [`new_histogram`] and [`Histogram`]; the rest is the
//! worker's own.

pub(crate) mod entry;
pub(crate) mod histograms;
pub(crate) mod hlog;
pub(crate) mod http;
pub(crate) mod prometheus;
mod source;

pub use hdrhistogram::Histogram;

pub use self::histograms::new_histogram;
pub use self::source::{Exposition, MetricKind, MetricsSource};

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use molt_ipc_ring::frame::Status;
use molt_ipc_ring::lock::{Condvar, Mutex, MutexGuard};

use self::histograms::{Recorder, Sample};
use crate::dispatcher::{ReplyObserver, Timings};

/// Reads the admission queue's depth now (the dispatcher exists only after the metrics do).
pub(crate) type DepthGauge = Box<dyn Fn() -> u32 + Send + Sync>;

/// All of the worker's metrics; shared by the dispatcher (through [`ReplyObserver`]), the
/// `__metrics__` entry, the HTTP endpoint, signal handlers and the dump thread.
pub(crate) struct WorkerMetrics {
    /// `None` with `--no-metrics`: nothing is recorded, only the gauges are shown.
    recorder: Option<Recorder>,
    /// The app's libraries' metrics (molt-db's, ...), shown and logged with the worker's.
    sources: Vec<Arc<dyn MetricsSource>>,
    harvested: Mutex<Vec<Harvested>>,
    queue_depth: OnceLock<DepthGauge>,
    queue_capacity: usize,
    /// With `--metrics-dir`: the dump thread and how to reach it.
    dumps: Option<Dumps>,
}

/// One entry's samples outside the reply path.
#[derive(Default)]
struct Harvested {
    /// Empty; swapped with the live sample at each harvest.
    spare: Sample,
    /// Everything since start: what Prometheus shows.
    since_start: Sample,
    /// Everything since the last interval written to the log.
    since_dump: Sample,
}

struct Dumps {
    path: PathBuf,
    control: Arc<DumpControl>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct DumpControl {
    state: Mutex<DumpRequests>,
    wake: Condvar,
}

#[derive(Default)]
struct DumpRequests {
    /// SIGUSR1 asked for an interval now.
    now: bool,
    /// The worker is exiting: write the last interval and end.
    last: bool,
}

/// How the metrics are set up; from the command line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MetricsConfig {
    /// Record at all (`--no-metrics` turns it off, to measure what recording costs).
    pub record: bool,
    /// Where the interval log goes (`--metrics-dir`); no log without it.
    pub dir: Option<PathBuf>,
    /// How often an interval is logged (`--metrics-interval`, seconds).
    pub interval: Duration,
}

impl WorkerMetrics {
    /// Metrics for the enabled entries `names` (in the dispatcher's order), with an admission
    /// queue of `queue_capacity`. With a log directory, creates the run's `.hlog` there and
    /// starts the dump thread; fails if the file cannot be created.
    pub fn start(
        config: &MetricsConfig,
        names: Vec<&'static str>,
        queue_capacity: usize,
        sources: Vec<Arc<dyn MetricsSource>>,
    ) -> std::io::Result<Arc<Self>> {
        let harvested = names.iter().map(|_| Harvested::default()).collect();
        let recorder = config.record.then(|| Recorder::new(names));
        let mut metrics = Self {
            recorder,
            sources,
            harvested: Mutex::new(harvested),
            queue_depth: OnceLock::new(),
            queue_capacity,
            dumps: None,
        };
        let Some(dir) = config.dir.as_deref() else {
            return Ok(Arc::new(metrics));
        };
        let started = SystemTime::now();
        let (path, file) = hlog::create(dir, started, std::process::id())?;
        let control = Arc::new(DumpControl::default());
        metrics.dumps = Some(Dumps {
            path,
            control: Arc::clone(&control),
            thread: Mutex::new(None),
        });
        let metrics = Arc::new(metrics);
        let dumper = Arc::clone(&metrics);
        let interval = config.interval;
        let thread = std::thread::Builder::new()
            .name("molt-metrics".into())
            .spawn(move || dumper.run_dumps(&file, started, interval, &control))?;
        if let Some(dumps) = &metrics.dumps {
            *dumps.thread.lock() = Some(thread);
        }
        Ok(metrics)
    }

    /// Lets the gauges read the admission queue, once the dispatcher exists.
    pub fn watch_queue_depth(&self, gauge: DepthGauge) {
        // Set once at start-up; a second call would be a wiring mistake, and is ignored.
        let _ = self.queue_depth.set(gauge);
    }

    /// The run's interval log, if `--metrics-dir` was given.
    pub fn log_path(&self) -> Option<&Path> {
        self.dumps.as_ref().map(|dumps| dumps.path.as_path())
    }

    /// Asks the dump thread for an interval now (SIGUSR1). Returns false without a log.
    pub fn request_dump(&self) -> bool {
        let Some(dumps) = &self.dumps else {
            return false;
        };
        dumps.control.state.lock().now = true;
        dumps.control.wake.notify_one();
        true
    }

    /// Writes the last interval and stops the dump thread; returns once the log is complete.
    /// Call after the last reply has been sent. Idempotent.
    pub fn finish(&self) {
        let Some(dumps) = &self.dumps else {
            return;
        };
        dumps.control.state.lock().last = true;
        dumps.control.wake.notify_one();
        // Held while joining, so a second caller returns only after the log is complete.
        let mut thread = dumps.thread.lock();
        if let Some(thread) = thread.take() {
            // The dump thread only ends by returning; write errors were logged there.
            let _ = thread.join();
        }
    }

    /// The Prometheus text exposition of everything recorded since start.
    pub fn prometheus_text(&self) -> String {
        let gauges = prometheus::Gauges {
            queue_depth: self.queue_depth.get().map_or(0, |gauge| gauge()),
            queue_capacity: self.queue_capacity,
        };
        let mut text = match &self.recorder {
            None => prometheus::render(&gauges, None::<[(&'static str, &Sample); 0]>),
            Some(recorder) => {
                let harvested = self.harvest(recorder);
                let samples = recorder
                    .names()
                    .iter()
                    .copied()
                    .zip(harvested.iter().map(|entry| &entry.since_start));
                prometheus::render(&gauges, Some(samples))
            }
        };
        let mut exposition = Exposition::new(&mut text);
        for source in &self.sources {
            source.expose(&mut exposition);
        }
        text
    }

    /// Moves what every entry recorded since the last harvest into its totals; returns them,
    /// locked. The reply path is held up only for each entry's swap.
    fn harvest(&self, recorder: &Recorder) -> MutexGuard<'_, Vec<Harvested>> {
        let mut harvested = self.harvested.lock();
        let logging = self.dumps.is_some();
        for (index, entry) in harvested.iter_mut().enumerate() {
            recorder.swap_out(index, &mut entry.spare);
            entry.since_start.add(&entry.spare);
            if logging {
                entry.since_dump.add(&entry.spare);
            }
            entry.spare.clear();
        }
        harvested
    }

    /// The dump thread: headers, then an interval whenever one is due or asked for, then the
    /// last one at exit.
    fn run_dumps(
        &self,
        file: &std::fs::File,
        started: SystemTime,
        every: Duration,
        control: &DumpControl,
    ) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let path = self
            .log_path()
            .map(Path::display)
            .map(|path| path.to_string())
            .unwrap_or_default();
        let mut serializer = V2DeflateSerializer::new();
        let mut out = hlog::WholeLines::new(file);
        let mut writer = match hlog::begin(&mut out, &mut serializer, started) {
            Ok(writer) => writer,
            Err(err) => {
                log::error!("metrics: cannot write the interval log {}: {err}", path);
                return;
            }
        };
        let mut interval_start = started;
        let mut due = Instant::now() + every;
        let mut failed = false;
        loop {
            let last = {
                let mut requests = control.state.lock();
                while !requests.now && !requests.last && Instant::now() < due {
                    let wait = due.saturating_duration_since(Instant::now());
                    requests = control.wake.wait_timeout(requests, wait);
                }
                requests.now = false;
                requests.last
            };
            let now = SystemTime::now();
            let mut harvested = self.harvest(recorder);
            let start = interval_start.duration_since(started).unwrap_or_default();
            let length = now.duration_since(interval_start).unwrap_or_default();
            let samples = recorder
                .names()
                .iter()
                .copied()
                .zip(harvested.iter().map(|entry| &entry.since_dump));
            let mut extra = Vec::new();
            for source in &self.sources {
                source.take_interval(&mut extra);
            }
            let written = hlog::write_interval(&mut writer, samples, start, length)
                .and_then(|()| hlog::write_tagged(&mut writer, &extra, start, length));
            match written {
                Ok(()) => failed = false,
                // Once per run of failures, not once per interval.
                Err(err) if !failed => {
                    failed = true;
                    log::error!("metrics: cannot append to {}: {err}", path);
                }
                Err(_) => {}
            }
            for entry in harvested.iter_mut() {
                entry.since_dump.clear();
            }
            drop(harvested);
            interval_start = now;
            if last {
                return;
            }
            due = Instant::now() + every;
        }
    }
}

impl ReplyObserver for Arc<WorkerMetrics> {
    fn on_reply(&self, entry: usize, name: &'static str, status: Status, timings: &Timings) {
        if let Some(recorder) = &self.recorder {
            recorder.on_reply(entry, name, status, timings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: Option<PathBuf>) -> MetricsConfig {
        MetricsConfig {
            record: true,
            dir,
            interval: Duration::from_secs(3600),
        }
    }

    fn reply(metrics: &Arc<WorkerMetrics>, entry: usize, status: Status) {
        metrics.on_reply(
            entry,
            "",
            status,
            &Timings {
                queue: Duration::from_micros(3),
                exec: Duration::from_micros(7),
                queue_depth: 1,
            },
        );
    }

    #[test]
    fn prometheus_counts_every_reply_across_harvests() {
        let metrics =
            WorkerMetrics::start(&config(None), vec!["echo", "compute"], 8, Vec::new()).unwrap();
        metrics.watch_queue_depth(Box::new(|| 5));
        reply(&metrics, 1, Status::Ok);
        let first = metrics.prometheus_text();
        assert!(first.contains("molt_worker_replies_total{entry=\"compute\",status=\"Ok\"} 1\n"));
        reply(&metrics, 1, Status::Ok);
        reply(&metrics, 1, Status::Timeout);
        let second = metrics.prometheus_text();
        assert!(second.contains("molt_worker_replies_total{entry=\"compute\",status=\"Ok\"} 2\n"));
        assert!(
            second.contains("molt_worker_replies_total{entry=\"compute\",status=\"Timeout\"} 1\n")
        );
        assert!(second.contains("molt_worker_total_seconds_count{entry=\"compute\"} 3\n"));
        assert!(second.contains("molt_worker_total_seconds_count{entry=\"echo\"} 0\n"));
        assert!(second.contains("molt_worker_admission_queue_depth 5\n"));
        assert!(!metrics.request_dump(), "no log without a directory");
    }

    #[test]
    fn with_recording_off_nothing_is_counted() {
        let config = MetricsConfig {
            record: false,
            ..config(None)
        };
        let metrics = WorkerMetrics::start(&config, vec!["echo"], 8, Vec::new()).unwrap();
        reply(&metrics, 0, Status::Ok);
        assert!(!metrics.prometheus_text().contains("replies_total"));
    }

    #[test]
    fn dumps_on_request_and_at_finish_log_each_reply_once() {
        let dir = std::env::temp_dir().join(format!("molt-metrics-test-{}", std::process::id()));
        let metrics =
            WorkerMetrics::start(&config(Some(dir.clone())), vec!["echo"], 8, Vec::new()).unwrap();
        let path = metrics.log_path().unwrap().to_owned();
        reply(&metrics, 0, Status::Ok);
        reply(&metrics, 0, Status::Ok);
        assert!(metrics.request_dump());
        let lines = |path: &Path| -> Vec<String> {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|line| line.starts_with("Tag=echo.total,"))
                .map(str::to_owned)
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines(&path).is_empty() {
            assert!(Instant::now() < deadline, "no interval written on request");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Prometheus harvests too; the next interval must still get this reply.
        reply(&metrics, 0, Status::Busy);
        let _ = metrics.prometheus_text();
        metrics.finish();
        metrics.finish();
        let written = lines(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(written.len(), 2, "one interval on request, one at finish");
        let counts: Vec<u64> = written.iter().map(|line| decode_count(line)).collect();
        assert_eq!(counts, [2, 1]);
    }

    /// A library's metrics: one latency histogram, handed out once per interval.
    struct Lookups(Mutex<Histogram<u64>>);

    impl MetricsSource for Lookups {
        fn expose(&self, out: &mut Exposition<'_>) {
            out.family("lib_lookup_seconds", MetricKind::Histogram, "Lookups.");
            let values = self.0.lock();
            out.latency_histogram("lib_lookup_seconds", &[("table", "t")], &values, 2_000);
        }

        fn take_interval(&self, out: &mut Vec<(String, Histogram<u64>)>) {
            let mut values = self.0.lock();
            out.push(("lib.lookup".to_owned(), values.clone()));
            values.reset();
        }
    }

    #[test]
    fn a_librarys_metrics_are_shown_and_logged_with_the_workers() {
        let dir = std::env::temp_dir().join(format!("molt-metrics-source-{}", std::process::id()));
        let mut values = new_histogram();
        values.record(2_000).unwrap();
        let source: Arc<dyn MetricsSource> = Arc::new(Lookups(Mutex::new(values)));
        let metrics =
            WorkerMetrics::start(&config(Some(dir.clone())), vec!["echo"], 8, vec![source])
                .unwrap();
        let text = metrics.prometheus_text();
        assert!(
            text.contains("# TYPE lib_lookup_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("lib_lookup_seconds_count{table=\"t\"} 1\n"),
            "{text}"
        );
        let path = metrics.log_path().unwrap().to_owned();
        metrics.finish();
        let log = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let line = log
            .lines()
            .find(|line| line.starts_with("Tag=lib.lookup,"))
            .expect("tagged");
        assert_eq!(decode_count(line), 1);
    }

    fn decode_count(line: &str) -> u64 {
        use base64::Engine;
        use hdrhistogram::serialization::Deserializer;
        let encoded = line.rsplit(',').next().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let histogram: hdrhistogram::Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        histogram.len()
    }
}
