//! The worker's metrics as an operator sees them: the `.hlog` written to `--metrics-dir` (at
//! exit, on SIGUSR1, on SIGTERM), `GET /metrics` on `--metrics-listen`, and `__metrics__`
//! over the protocol. Real binary, real pipes.

mod common {
    pub mod process;
    pub mod stdio_frames;
    pub mod temp_dir;
}

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use molt_ipc_ring::frame::{self, Codec, Frame, Status, DEFAULT_MAX_FRAME_BYTES};

use common::process::{repo_file, send_signal, wait_for_exit, HANG_BOUND};
use common::stdio_frames::{read_frame, write_frame};
use common::temp_dir::TempDir;

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Lines of stderr, read by a thread so the worker never blocks on a full pipe.
    stderr_lines: mpsc::Receiver<String>,
    next_id: u64,
}

impl Worker {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_molt_worker_test"))
            .arg("--stdio")
            .arg("--exports")
            .arg(repo_file("molt_exports.test.json"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start molt_worker");
        let stderr = child.stderr.take().unwrap();
        let (sender, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            child,
            stderr_lines,
            next_id: 1,
        }
    }

    /// One call, waiting for its reply: (status, codec, payload).
    fn call(&mut self, entry: &str, codec: Codec, payload: &[u8]) -> (Status, Codec, Vec<u8>) {
        let request_id = self.next_id;
        self.next_id += 1;
        let stdin = self.stdin.as_mut().expect("stdin open");
        write_frame(stdin, &Frame::call(request_id, entry, codec, payload)).unwrap();
        let reply = read_frame(&mut self.stdout).expect("a reply");
        let frame = frame::decode(&reply, DEFAULT_MAX_FRAME_BYTES).expect("a valid reply");
        assert_eq!(frame.request_id, request_id);
        (frame.status, frame.codec, frame.payload.to_vec())
    }

    fn echo_calls(&mut self, count: usize) {
        for _ in 0..count {
            assert_eq!(self.call("echo", Codec::Raw, &[7; 64]).0, Status::Ok);
        }
    }

    fn list_items_calls(&mut self, count: usize) {
        for _ in 0..count {
            let (status, _, _) = self.call("list_items", Codec::Json, br#"{"user_id": 7}"#);
            assert_eq!(status, Status::Ok);
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    fn stderr_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + HANG_BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line containing {needle:?}"),
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        send_signal(&self.child, signal);
    }

    fn close_stdin(&mut self) {
        self.stdin.take();
    }

    fn wait(&mut self) -> ExitStatus {
        wait_for_exit(&mut self.child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one `.hlog` in `dir`.
fn log_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the metrics dir exists")
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one log per run: {files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("molt_worker-") && name.ends_with(".hlog"),
        "{name}"
    );
    files[0].clone()
}

/// Values counted per tag over every interval of the log, and how many intervals there were.
fn counts_by_tag(path: &Path) -> (BTreeMap<String, u64>, usize) {
    let text = std::fs::read(path).unwrap();
    let mut counts = BTreeMap::new();
    let mut lines = 0;
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&text) {
        if let LogEntry::Interval(interval) = entry.expect("a well-formed log") {
            let bytes = STANDARD.decode(interval.encoded_histogram()).unwrap();
            let histogram: Histogram<u64> =
                deserializer.deserialize(&mut bytes.as_slice()).unwrap();
            let tag = interval
                .tag()
                .expect("every line is tagged")
                .as_str()
                .to_owned();
            *counts.entry(tag).or_insert(0) += histogram.len();
            lines += 1;
        }
    }
    (counts, lines)
}

#[test]
fn the_log_written_at_eof_counts_every_call_per_entry_and_series() {
    let dir = TempDir::new("eof");
    let dir_arg = dir.path().to_str().unwrap();
    let mut worker = Worker::start(&["--metrics-dir", dir_arg, "--metrics-interval", "3600"]);
    worker.echo_calls(300);
    worker.list_items_calls(25);
    assert_eq!(
        worker.call("no_such_entry", Codec::Raw, b"").0,
        Status::NotFound
    );
    worker.close_stdin();
    assert!(worker.wait().success());

    let (counts, _) = counts_by_tag(&log_file(dir.path()));
    for series in ["queue", "exec", "total", "queue_depth"] {
        assert_eq!(counts[&format!("echo.{series}")], 300, "echo.{series}");
        assert_eq!(
            counts[&format!("list_items.{series}")],
            25,
            "list_items.{series}"
        );
        assert_eq!(counts[&format!("compute.{series}")], 0, "compute.{series}");
    }
    assert!(
        !counts.keys().any(|tag| tag.starts_with("no_such_entry")),
        "an unknown entry has no histograms"
    );
}

#[test]
fn sigusr1_writes_an_interval_while_the_worker_runs() {
    let dir = TempDir::new("usr1");
    let dir_arg = dir.path().to_str().unwrap();
    let mut worker = Worker::start(&["--metrics-dir", dir_arg, "--metrics-interval", "3600"]);
    worker.stderr_line("ready");
    worker.echo_calls(40);
    worker.signal(libc::SIGUSR1);
    let path = log_file(dir.path());
    let deadline = Instant::now() + HANG_BOUND;
    while counts_by_tag(&path).0.get("echo.total") != Some(&40) {
        assert!(Instant::now() < deadline, "SIGUSR1 wrote no interval");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "SIGUSR1 must not stop the worker"
    );

    worker.echo_calls(2);
    worker.close_stdin();
    assert!(worker.wait().success());
    let (counts, intervals) = counts_by_tag(&path);
    assert_eq!(counts["echo.total"], 42);
    let tags_per_interval = counts.len();
    assert_eq!(
        intervals,
        2 * tags_per_interval,
        "one interval on SIGUSR1, one at exit"
    );
}

#[test]
fn intervals_are_written_every_metrics_interval() {
    let dir = TempDir::new("interval");
    let dir_arg = dir.path().to_str().unwrap();
    let mut worker = Worker::start(&["--metrics-dir", dir_arg, "--metrics-interval", "0.1"]);
    worker.echo_calls(5);
    let path = log_file(dir.path());
    let deadline = Instant::now() + HANG_BOUND;
    while counts_by_tag(&path).0.get("echo.total") != Some(&5) {
        assert!(
            Instant::now() < deadline,
            "no interval written on the timer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.close_stdin();
    assert!(worker.wait().success());
}

#[test]
fn sigterm_writes_the_last_interval_before_exiting() {
    let dir = TempDir::new("term");
    let dir_arg = dir.path().to_str().unwrap();
    let mut worker = Worker::start(&["--metrics-dir", dir_arg, "--metrics-interval", "3600"]);
    worker.stderr_line("ready");
    worker.echo_calls(17);
    worker.signal(libc::SIGTERM);
    assert!(worker.wait().success());
    let (counts, _) = counts_by_tag(&log_file(dir.path()));
    assert_eq!(counts["echo.total"], 17);
}

#[test]
fn metrics_over_the_protocol_are_prometheus_text_with_the_counts() {
    let mut worker = Worker::start(&[]);
    worker.echo_calls(12);
    let (status, codec, payload) = worker.call("__metrics__", Codec::Raw, b"");
    assert_eq!((status, codec), (Status::Ok, Codec::Raw));
    let text = String::from_utf8(payload).unwrap();
    assert!(
        text.contains("molt_worker_replies_total{entry=\"echo\",status=\"Ok\"} 12\n"),
        "{text}"
    );
    assert!(text.contains("molt_worker_total_seconds_count{entry=\"echo\"} 12\n"));

    let (status, _, message) = worker.call("__metrics__", Codec::MsgPack, b"");
    assert_eq!(
        status,
        Status::InvalidInput,
        "{}",
        String::from_utf8_lossy(&message)
    );
}

#[test]
fn metrics_listen_serves_get_metrics_on_loopback() {
    let mut worker = Worker::start(&["--metrics-listen", "127.0.0.1:0"]);
    let line = worker.stderr_line("serving GET /metrics on http://");
    let addr = line.rsplit("http://").next().unwrap().trim().to_owned();
    worker.echo_calls(9);

    let get = |request: &str| -> String {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(HANG_BOUND)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let response = get("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"));
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    assert!(body.contains("molt_worker_replies_total{entry=\"echo\",status=\"Ok\"} 9\n"));

    assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    worker.close_stdin();
    assert!(worker.wait().success());
}

#[test]
fn a_non_loopback_metrics_address_is_a_usage_error() {
    let mut worker = Worker::start(&["--metrics-listen", "0.0.0.0:9464"]);
    assert_eq!(worker.wait().code(), Some(2));
}

#[test]
fn an_unwritable_metrics_dir_fails_start_up() {
    let dir = TempDir::new("unwritable");
    std::fs::write(dir.path(), b"a file, not a directory").unwrap();
    let mut worker = Worker::start(&["--metrics-dir", dir.path().to_str().unwrap()]);
    assert_eq!(worker.wait().code(), Some(1));
    let _ = std::fs::remove_file(dir.path());
}
