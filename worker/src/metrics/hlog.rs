//! HdrHistogram interval logs (`.hlog`): the format of HdrHistogram's own `HistogramLogWriter`,
//! readable by its `HistogramLogProcessor`, by the Python `hdrhistogram` package's
//! `HistogramLogReader` and by `bench/scripts/hdr_report.py`.
//!
//! One file per worker run, named after its start time and pid. Headers first (`#[StartTime]`,
//! `#[BaseTime]`, both the run's start, then the column legend), then one line per entry and
//! series per interval: `Tag=list_items.total,<start>,<length>,<max>,<histogram>`, where start
//! is seconds since BaseTime, max is in the series' own unit (nanoseconds, or calls for
//! `queue_depth`) and the histogram is base64 of the compressed V2 encoding.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;

use super::histograms::{Sample, Series};

/// The column legend HdrHistogram's writers put after the headers.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// The writer of one log's interval lines.
pub type LogWriter<'a, 'b> = IntervalLogWriter<'a, 'b, WholeLines<'a>, V2DeflateSerializer>;

/// Hands the file whole lines only, each in one `write`, so a reader tailing a live log
/// never sees half an interval line (the log writer emits each line in several pieces).
pub struct WholeLines<'f> {
    file: &'f File,
    pending: Vec<u8>,
}

impl<'f> WholeLines<'f> {
    /// Whole-line writes to `file`.
    pub fn new(file: &'f File) -> Self {
        Self {
            file,
            pending: Vec::with_capacity(4 << 10),
        }
    }
}

impl Write for WholeLines<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') {
            let result = self.file.write_all(&self.pending[..=last_newline]);
            // Dropped even on error: a line is written whole or not at all.
            self.pending.drain(..=last_newline);
            result?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.file.write_all(&self.pending);
        self.pending.clear();
        result
    }
}

/// Creates `dir` if need be and, in it, a new log file for a run started at `started` by
/// process `pid`. Never overwrites: a name already taken is an error.
pub fn create(dir: &Path, started: SystemTime, pid: u32) -> io::Result<(PathBuf, File)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file_name(started, pid));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// `molt_worker-20261123T124440.123Z-4242.hlog`: UTC start time to the millisecond, then pid,
/// so a directory lists runs in start order.
fn file_name(started: SystemTime, pid: u32) -> String {
    let since_epoch = started.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "molt_worker-{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z-{pid}.hlog",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes the headers to `out` and returns the writer of the interval lines.
pub fn begin<'a, 'b>(
    out: &'a mut WholeLines<'a>,
    serializer: &'b mut V2DeflateSerializer,
    started: SystemTime,
) -> io::Result<LogWriter<'a, 'b>> {
    // The crate writes no legend; it goes straight to the file after the (whole) headers.
    let mut legend_out: &File = out.file;
    let writer = IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "[Logged with molt_worker {}]",
            env!("CARGO_PKG_VERSION")
        ))
        .add_comment("[Histogram log format version 1.3]")
        .add_comment("[Times in nanoseconds; queue_depth in calls]")
        .with_start_time(started)
        .with_base_time(started)
        .begin_log_with(out, serializer)?;
    legend_out.write_all(LEGEND.as_bytes())?;
    Ok(writer)
}

/// Writes one interval: every series of every entry, tagged `entry.series`, empty ones
/// included so each interval has the same lines. `start` is the interval's start as an
/// offset from the log's BaseTime.
pub fn write_interval<'s>(
    writer: &mut LogWriter<'_, '_>,
    samples: impl IntoIterator<Item = (&'static str, &'s Sample)>,
    start: Duration,
    length: Duration,
) -> io::Result<()> {
    for (entry, sample) in samples {
        for series in Series::ALL {
            let tag = format!("{entry}.{}", series.tag_suffix());
            // Entry names are identifiers (no commas, spaces or line breaks): always a valid tag.
            writer
                .write_histogram(sample.histogram(series), start, length, Tag::new(&tag))
                .map_err(|err| io::Error::other(err.to_string()))?;
        }
    }
    Ok(())
}

/// Writes one interval of histograms tagged by the app's libraries (their tags are checked:
/// one with a comma, a space or a line break would break the line and is skipped, logged).
pub fn write_tagged(
    writer: &mut LogWriter<'_, '_>,
    tagged: &[(String, hdrhistogram::Histogram<u64>)],
    start: Duration,
    length: Duration,
) -> io::Result<()> {
    for (tag, histogram) in tagged {
        if tag.is_empty() || tag.contains([',', ' ', '\n', '\r']) {
            log::warn!("metrics: skipped a histogram with the unusable tag {tag:?}");
            continue;
        }
        writer
            .write_histogram(histogram, start, length, Tag::new(tag))
            .map_err(|err| io::Error::other(err.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::Timings;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use molt_ipc_ring::frame::Status;

    #[test]
    fn only_whole_lines_reach_the_file() {
        let dir = std::env::temp_dir().join(format!("molt-hlog-lines-{}", std::process::id()));
        let (path, file) = create(&dir, SystemTime::now(), 1).unwrap();
        let mut lines = WholeLines::new(&file);
        lines.write_all(b"Tag=a,1,").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        lines.write_all(b"2\nTag=b,").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"Tag=a,1,2\n");
        lines.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"Tag=a,1,2\nTag=b,");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_names_carry_the_utc_start_and_the_pid() {
        let started = UNIX_EPOCH + Duration::from_millis(1_795_437_880_123);
        assert_eq!(
            file_name(started, 4242),
            "molt_worker-20261123T124440.123Z-4242.hlog"
        );
        assert_eq!(
            file_name(UNIX_EPOCH, 1),
            "molt_worker-19700101T000000.000Z-1.hlog"
        );
    }

    #[test]
    fn leap_days_are_dated_right() {
        // 2024-02-29 is day 19782 since the epoch; 2000-03-01 is day 11017.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
    }

    #[test]
    fn a_log_has_the_standard_headers_and_one_tagged_line_per_series() {
        let dir = std::env::temp_dir().join(format!("molt-hlog-test-{}", std::process::id()));
        let started = SystemTime::now();
        let (path, file) = create(&dir, started, 7).unwrap();
        let mut sample = Sample::default();
        let timings = Timings {
            queue: Duration::from_nanos(900),
            exec: Duration::from_micros(30),
            queue_depth: 2,
        };
        for _ in 0..5 {
            sample.record(Status::Ok, &timings);
        }
        {
            let mut serializer = V2DeflateSerializer::new();
            let mut out = WholeLines::new(&file);
            let mut writer = begin(&mut out, &mut serializer, started).unwrap();
            write_interval(
                &mut writer,
                [("echo", &sample)],
                Duration::ZERO,
                Duration::from_secs(1),
            )
            .unwrap();
        }
        assert!(
            create(&dir, started, 7).is_err(),
            "an existing log is never overwritten"
        );
        let text = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let as_text = String::from_utf8(text.clone()).unwrap();
        assert!(as_text.contains("#[StartTime: "));
        assert!(as_text.contains("#[BaseTime: "));
        assert!(as_text.contains(LEGEND));
        let mut tags = Vec::new();
        let mut deserializer = Deserializer::new();
        for entry in IntervalLogIterator::new(&text) {
            if let LogEntry::Interval(interval) = entry.unwrap() {
                let encoded = STANDARD.decode(interval.encoded_histogram()).unwrap();
                let histogram: hdrhistogram::Histogram<u64> =
                    deserializer.deserialize(&mut encoded.as_slice()).unwrap();
                assert_eq!(histogram.len(), 5);
                tags.push(interval.tag().unwrap().as_str().to_owned());
            }
        }
        assert_eq!(
            tags,
            ["echo.queue", "echo.exec", "echo.total", "echo.queue_depth"]
        );
    }
}
