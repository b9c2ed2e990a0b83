//! Round trip of a 64-byte echo call through the real `molt_worker` over shared memory, from
//! a Rust client on the `molt-ipc-ring` client side, and the worker's CPU use while one
//! connection idles.
//!
//! `cargo bench -p molt-demo-worker --bench shm_echo [-- CALLS [SPIN_US...]]`
//!
//! For each worker spin window (default 0, 20, 50 and 200 µs) it starts a worker, then runs:
//! - back-to-back: CALLS calls (default 100,000), each sent as soon as the previous reply
//!   arrived: the hot path, where neither side should ever sleep;
//! - paced: 2,000 calls 1 ms apart: every call finds the worker asleep past its spin window
//!   and pays one futex wake-up;
//! - idle: CPU time of every worker thread over 2 s while 1, then 10 connections stay open
//!   and unused (from `/proc/PID/task/*/schedstat`, nanosecond resolution);
//! - hang-up: 20 times, a client drops its socket and segment with a call done; time until
//!   the worker has unmapped the segment (polling `/proc/PID/maps` every 50 µs).
//!
//! Latencies are printed as p50/p90/p99/p99.9/max in microseconds from an HDR histogram.
//! The client spins for 50 µs before sleeping on its response ring. Both processes share the
//! machine's cores with whatever else runs: numbers from a busy machine are pessimistic.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use molt_ipc_ring::frame::{self, Codec, Frame, HEADER_LEN};
use molt_ipc_ring::handshake;
use molt_ipc_ring::platform::clock::monotonic_now_ns;
use molt_ipc_ring::segment::ClientSide;
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};

const PAYLOAD: [u8; 64] = [0x5a; 64];
const PACED_CALLS: usize = 2_000;
const PACE: Duration = Duration::from_millis(1);
const IDLE_WINDOW: Duration = Duration::from_secs(2);
const HANG_UPS: usize = 20;
const WARM_UP_CALLS: usize = 5_000;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"));
    let calls = args
        .next()
        .map_or(100_000, |n| n.parse().expect("CALLS is a number"));
    let mut spins: Vec<u64> = args
        .map(|n| n.parse().expect("SPIN_US is a number"))
        .collect();
    if spins.is_empty() {
        spins = vec![0, 20, 50, 200];
    }
    println!("64 B echo over shared memory, Rust client, {calls} back-to-back calls");
    println!(
        "{:>8} {:>14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "spin_us", "mode", "p50", "p90", "p99", "p99.9", "max", "calls/s"
    );
    for spin_us in spins {
        let worker = Worker::start(spin_us);
        let mut client = Client::connect(&worker.socket);
        client.round_trips(WARM_UP_CALLS, Duration::ZERO);
        let started = Instant::now();
        let hot = client.round_trips(calls, Duration::ZERO);
        let rate = calls as f64 / started.elapsed().as_secs_f64();
        print_row(spin_us, "back-to-back", &hot, Some(rate));
        let paced = client.round_trips(PACED_CALLS, PACE);
        print_row(spin_us, "paced 1 ms", &paced, None);
        for idle_connections in [1, 10] {
            let extra: Vec<Client> = (1..idle_connections)
                .map(|_| Client::connect(&worker.socket))
                .collect();
            // Past every spin window: the connection threads sleep on their futex now.
            std::thread::sleep(Duration::from_millis(100));
            let before = worker.cpu_ns();
            std::thread::sleep(IDLE_WINDOW);
            let busy = worker.cpu_ns() - before;
            println!(
                "{spin_us:>8} {:>14} worker CPU {:.3}% of one core",
                format!("idle x{idle_connections}"),
                busy as f64 * 100.0 / IDLE_WINDOW.as_nanos() as f64
            );
            drop(extra);
        }
        let mut freed = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for _ in 0..HANG_UPS {
            let mut doomed = Client::connect(&worker.socket);
            doomed.round_trips(1, Duration::ZERO);
            let mapped = worker.mapped_segments();
            let started = Instant::now();
            drop(doomed);
            while worker.mapped_segments() >= mapped {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "segment never freed"
                );
                // Not a busy loop: on 2 cores it would compete with the worker it measures.
                std::thread::sleep(Duration::from_micros(50));
            }
            freed.record(started.elapsed().as_nanos() as u64).unwrap();
        }
        println!(
            "{spin_us:>8} {:>14} segment unmapped after p50 {:.2} ms, max {:.2} ms",
            "hang-up",
            freed.value_at_quantile(0.5) as f64 / 1e6,
            freed.max() as f64 / 1e6
        );
        drop(client);
    }
}

fn print_row(spin_us: u64, mode: &str, histogram: &Histogram<u64>, rate: Option<f64>) {
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1_000.0;
    println!(
        "{spin_us:>8} {mode:>14} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>8}",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        histogram.max() as f64 / 1_000.0,
        rate.map_or(String::new(), |r| format!("{r:.0}"))
    );
}

struct Worker {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Worker {
    fn start(spin_us: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("molt-shm-bench-{}", std::process::id()));
        let socket = dir.join("worker.sock");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../molt_exports.json");
        let child = Command::new(env!("CARGO_BIN_EXE_molt_worker"))
            .arg("--socket")
            .arg(&socket)
            .arg("--exports")
            .arg(manifest)
            .arg("--spin-us")
            .arg(spin_us.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start molt_worker");
        let started = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "worker never listened"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { child, dir, socket }
    }

    fn mapped_segments(&self) -> usize {
        std::fs::read_to_string(format!("/proc/{}/maps", self.child.id()))
            .expect("the worker runs")
            .lines()
            .filter(|line| line.contains("memfd:molt-segment"))
            .count()
    }

    /// CPU time of every thread of the worker so far, in nanoseconds.
    fn cpu_ns(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks)
            .expect("the worker runs")
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
                stat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child; SIGTERM lets it remove its socket.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Client {
    stream: UnixStream,
    side: ClientSide,
    wait: WaitConfig,
    next_id: u64,
    reply: Vec<u8>,
}

impl Client {
    fn connect(socket: &Path) -> Self {
        let (stream, side) = handshake::connect(socket, Duration::from_secs(5)).expect("handshake");
        Self {
            stream,
            side,
            wait: WaitConfig {
                spin: Duration::from_micros(50),
                ..WaitConfig::default()
            },
            next_id: 1,
            reply: Vec::new(),
        }
    }

    /// `calls` echo round trips, `pace` apart (zero: back to back); latency histogram in ns.
    fn round_trips(&mut self, calls: usize, pace: Duration) -> Histogram<u64> {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        let mut next_send = Instant::now();
        for _ in 0..calls {
            if !pace.is_zero() {
                let now = Instant::now();
                if next_send > now {
                    std::thread::sleep(next_send - now);
                }
                next_send += pace;
            }
            let started = monotonic_now_ns();
            self.echo();
            histogram
                .record((monotonic_now_ns() - started).max(1))
                .unwrap();
        }
        histogram
    }

    fn echo(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let call = Frame::call(id, "echo", Codec::Raw, &PAYLOAD);
        let mut header = [0u8; HEADER_LEN];
        call.write_header(&mut header);
        let mut slot = self
            .side
            .requests
            .reserve(call.encoded_len())
            .expect("room: one call in flight");
        slot.write(&header);
        slot.write(call.entry.as_bytes());
        slot.write(call.payload);
        slot.commit();
        let stream = &self.stream;
        let state = &self.side.state;
        let outcome = self
            .side
            .responses
            .wait(u64::MAX, &self.wait, || {
                state.is_closed()
                    || molt_ipc_ring::platform::peer::peer_hung_up(stream).unwrap_or(true)
            })
            .expect("an intact ring");
        assert_eq!(outcome, WaitOutcome::Ready, "the worker went away");
        self.reply.clear();
        let record = self.side.responses.pop().expect("a reply");
        record.append_to(&mut self.reply);
        record.consume();
        let reply = frame::decode(&self.reply, 1 << 20).expect("a valid reply");
        assert_eq!((reply.request_id, reply.payload), (id, &PAYLOAD[..]));
    }
}
