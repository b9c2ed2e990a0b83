//! Drives the real `molt_worker` binary over its shared-memory transport: real unix sockets,
//! real memfd segments, the client half of `molt-ipc-ring`.

mod common {
    pub mod process;
    pub mod reply;
    pub mod temp_dir;
}

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::{Codec, Frame, Kind, Status};
use molt_ipc_ring::handshake::{self, HandshakeError};
use molt_ipc_ring::platform::clock::monotonic_now_ns;
use molt_ipc_ring::platform::fd_passing;
use molt_ipc_ring::platform::peer::peer_hung_up;
use molt_ipc_ring::ring::PushError;
use molt_ipc_ring::segment::ClientSide;
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};
use serde_json::{json, Value};

use common::process::{repo_file, send_signal, wait_for_exit, HANG_BOUND};
use common::reply::{msgpack, Reply};
use common::temp_dir::TempDir;

/// Polls `condition` every millisecond until it holds; false after the hang bound.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < HANG_BOUND {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Where a test's worker listens, in the test's directory.
fn socket_in(dir: &TempDir) -> PathBuf {
    dir.path().join("worker.sock")
}

struct Worker {
    child: Child,
    socket: PathBuf,
}

impl Worker {
    /// Starts a worker on `socket` and waits until it accepts connections.
    fn start(socket: &Path, extra_args: &[&str]) -> Self {
        let mut worker = Self::spawn(socket, extra_args);
        let ready = eventually(|| {
            if let Some(status) = worker.child.try_wait().unwrap() {
                panic!(
                    "molt_worker exited at start-up: {status}: {}",
                    worker.stderr()
                );
            }
            UnixStream::connect(socket).is_ok()
        });
        assert!(ready, "molt_worker never listened on {}", socket.display());
        worker
    }

    fn spawn(socket: &Path, extra_args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_molt_worker_test"))
            .arg("--socket")
            .arg(socket)
            .arg("--exports")
            .arg(repo_file("molt_exports.test.json"))
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start molt_worker");
        Self {
            child,
            socket: socket.to_owned(),
        }
    }

    fn connect(&self) -> Client {
        let (stream, side) =
            handshake::connect(&self.socket, HANG_BOUND).expect("handshake with the worker");
        Client { stream, side }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: i32) {
        send_signal(&self.child, signal);
    }

    fn wait(&mut self) -> ExitStatus {
        wait_for_exit(&mut self.child)
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        }
        text
    }

    /// Segments mapped in the worker: one per connection being served.
    fn mapped_segments(&self) -> usize {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).unwrap();
        maps.lines()
            .filter(|line| line.contains("memfd:molt-segment"))
            .count()
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: UnixStream,
    side: ClientSide,
}

impl Client {
    fn send(&mut self, frame: &Frame<'_>) {
        self.send_raw(&frame.encode_to_vec());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let sent = eventually(|| match self.side.requests.push(bytes) {
            Ok(()) => true,
            Err(PushError::Full) => false,
            Err(err) => panic!("push: {err}"),
        });
        assert!(sent, "the worker never made room in the request ring");
    }

    fn call(&mut self, request_id: u64, entry: &str, codec: Codec, payload: &[u8]) {
        self.send(&Frame::call(request_id, entry, codec, payload));
    }

    /// The next reply, or `None` once the worker closed the connection and nothing is left.
    fn try_recv(&mut self) -> Option<Reply> {
        let config = WaitConfig {
            spin: Duration::from_micros(20),
            ..WaitConfig::default()
        };
        let (state, stream) = (&self.side.state, &self.stream);
        let outcome = self
            .side
            .responses
            .wait(
                monotonic_now_ns() + HANG_BOUND.as_nanos() as u64,
                &config,
                || state.is_closed() || peer_hung_up(stream).unwrap_or(true),
            )
            .expect("an intact response ring");
        match outcome {
            WaitOutcome::Ready => {}
            WaitOutcome::Closed => return None,
            WaitOutcome::TimedOut => panic!("no reply before the hang bound"),
        }
        let mut bytes = Vec::new();
        let record = self.side.responses.pop().expect("a reply");
        record.append_to(&mut bytes);
        record.consume();
        Some(Reply::decode(&bytes))
    }

    fn recv(&mut self) -> Reply {
        self.try_recv()
            .expect("a reply before the worker closed the connection")
    }

    /// Replies until the pong for a ping sent now: the worker handles a connection's frames
    /// in order, so every reply decided before the ping comes first.
    fn replies_until_pong(&mut self, ping_id: u64) -> Vec<Reply> {
        self.send(&Frame::ping(ping_id));
        let mut replies = Vec::new();
        loop {
            let reply = self.recv();
            if reply.kind == Kind::Pong && reply.request_id == ping_id {
                return replies;
            }
            replies.push(reply);
        }
    }

    /// Asserts that the worker ends the connection with one ProtocolError for request 0.
    fn expect_protocol_error_and_close(&mut self) {
        let reply = self.recv();
        assert_eq!(
            (reply.request_id, reply.status),
            (0, Status::ProtocolError),
            "{}",
            reply.message()
        );
        assert!(
            self.try_recv().is_none(),
            "the connection is closed after it"
        );
    }
}

fn started(name: &str, extra_args: &[&str]) -> (TempDir, Worker) {
    let dir = TempDir::new(name);
    let worker = Worker::start(&socket_in(&dir), extra_args);
    (dir, worker)
}

#[test]
fn ping_gets_a_pong_with_the_same_request_id() {
    let (_dir, worker) = started("ping", &[]);
    let mut client = worker.connect();
    client.send(&Frame::ping(77));
    let reply = client.recv();
    assert_eq!((reply.kind, reply.request_id), (Kind::Pong, 77));
}

#[test]
fn echo_returns_the_payload_unchanged_in_every_codec() {
    let (_dir, worker) = started("echo", &[]);
    let mut client = worker.connect();
    let large = vec![0xa5; 100_000];
    let cases: [(Codec, &[u8]); 4] = [
        (Codec::Raw, b"\x00\x01binary\xff"),
        (Codec::Json, br#"{"a": [1, 2]}"#),
        (Codec::MsgPack, &[0x81, 0xa1, b'a', 0x01]),
        (Codec::Raw, &large),
    ];
    for (id, (codec, payload)) in cases.into_iter().enumerate() {
        client.call(id as u64, "echo", codec, payload);
        let reply = client.recv();
        assert_eq!(
            (reply.request_id, reply.status, reply.codec),
            (id as u64, Status::Ok, codec)
        );
        assert_eq!(reply.payload, payload);
    }
}

#[test]
fn list_items_with_a_user_id_returns_items() {
    let (_dir, worker) = started("list_items", &[]);
    let mut client = worker.connect();
    client.call(
        1,
        "list_items",
        Codec::MsgPack,
        &msgpack(&json!({"user_id": 7, "limit": 5})),
    );
    let reply = client.recv();
    assert_eq!(
        (reply.status, reply.codec),
        (Status::Ok, Codec::MsgPack),
        "{reply:?}"
    );
    let result: Value = rmp_serde::from_slice(&reply.payload).unwrap();
    assert_eq!(result["items"].as_array().map(Vec::len), Some(5));
}

#[test]
fn an_unknown_entry_is_not_found() {
    let (_dir, worker) = started("unknown", &[]);
    let mut client = worker.connect();
    client.call(3, "nope", Codec::Raw, b"");
    let reply = client.recv();
    assert_eq!((reply.request_id, reply.status), (3, Status::NotFound));
    assert_eq!(reply.message(), "unknown entry: nope");
}

#[test]
fn a_flood_of_spin_calls_gets_busy_once_the_admission_queue_is_full() {
    let (_dir, worker) = started("busy", &["--max-queue", "2", "--compute-threads", "1"]);
    let mut client = worker.connect();
    let ids: Vec<u64> = (1..=8).collect();
    for &id in &ids {
        client.call(id, "spin", Codec::Json, br#"{"ms": 20000}"#);
    }
    let busy = client.replies_until_pong(1000);
    // One call runs (or is about to), two wait in the queue; the rest are refused at once.
    assert!(busy.len() >= ids.len() - 3, "{busy:?}");
    assert!(
        busy.iter().all(|reply| reply.status == Status::Busy),
        "{busy:?}"
    );
    let admitted: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| busy.iter().all(|reply| reply.request_id != *id))
        .collect();
    for &id in &admitted {
        client.send(&Frame::cancel(id));
    }
    for _ in &admitted {
        assert_eq!(client.recv().status, Status::Cancelled);
    }
}

#[test]
fn sleep_past_its_deadline_times_out() {
    let (_dir, worker) = started("timeout", &[]);
    let mut client = worker.connect();
    let deadline = monotonic_now_ns() + 50_000_000;
    client.send(
        &Frame::call(1, "sleep", Codec::Json, br#"{"ms": 20000}"#).with_deadline_ns(deadline),
    );
    let reply = client.recv();
    assert_eq!(
        (reply.request_id, reply.status, reply.codec),
        (1, Status::Timeout, Codec::Raw)
    );
}

#[test]
fn a_call_already_past_its_deadline_is_answered_timeout_without_running() {
    let (_dir, worker) = started("expired", &[]);
    let mut client = worker.connect();
    // Small (copied whole) and large (only its header and entry name are read).
    let small = br#"{"ms": 20000}"#.to_vec();
    let mut large = br#"{"ms": 20000, "pad": ""#.to_vec();
    large.extend(std::iter::repeat_n(b'x', 200_000));
    large.extend_from_slice(br#""}"#);
    for (id, payload) in [(1, &small), (2, &large)] {
        client.send(&Frame::call(id, "spin", Codec::Json, payload).with_deadline_ns(1));
        let reply = client.recv();
        assert_eq!((reply.request_id, reply.status), (id, Status::Timeout));
        assert_eq!(reply.metrics.exec_us, 0);
    }
    // The entry never ran: the one compute thread is free for an immediate call.
    client.call(3, "sleep", Codec::Json, br#"{"ms": 0}"#);
    assert_eq!(client.recv().status, Status::Ok);
}

#[test]
fn cancel_of_a_running_spin_replies_cancelled() {
    let (_dir, worker) = started("cancel", &[]);
    let mut client = worker.connect();
    client.call(1, "spin", Codec::Json, br#"{"ms": 20000}"#);
    std::thread::sleep(Duration::from_millis(20));
    client.send(&Frame::cancel(1));
    let reply = client.recv();
    assert_eq!(
        (reply.request_id, reply.status, reply.codec),
        (1, Status::Cancelled, Codec::Raw)
    );
    // A second cancel of the same call is ignored: the next reply is the pong.
    client.send(&Frame::cancel(1));
    assert!(client.replies_until_pong(2).is_empty());
}

#[test]
fn a_panic_in_an_entry_is_an_internal_error_and_the_worker_goes_on() {
    let (_dir, worker) = started("panic", &[]);
    let mut client = worker.connect();
    client.call(1, "panic", Codec::Raw, b"");
    let reply = client.recv();
    assert_eq!((reply.request_id, reply.status), (1, Status::InternalError));
    assert_eq!(reply.message(), "internal error");
    client.call(2, "echo", Codec::Raw, b"still here");
    assert_eq!(client.recv().payload, b"still here");
}

#[test]
fn the_metrics_entry_counts_calls_made_over_shared_memory() {
    let (_dir, worker) = started("metrics", &[]);
    let mut client = worker.connect();
    for id in 0..3 {
        client.call(id, "echo", Codec::Raw, b"x");
        assert_eq!(client.recv().status, Status::Ok);
    }
    client.call(9, "__metrics__", Codec::Raw, b"");
    let reply = client.recv();
    assert_eq!(reply.status, Status::Ok, "{}", reply.message());
    let text = String::from_utf8(reply.payload).unwrap();
    assert!(
        text.contains("molt_worker_replies_total{entry=\"echo\",status=\"Ok\"} 3\n"),
        "{text}"
    );
}

#[test]
fn many_connections_are_served_at_once_by_one_worker() {
    let (_dir, worker) = started("many", &[]);
    let mut clients: Vec<Client> = (0..4).map(|_| worker.connect()).collect();
    for (id, client) in clients.iter_mut().enumerate() {
        client.call(
            id as u64,
            "echo",
            Codec::Raw,
            format!("client {id}").as_bytes(),
        );
    }
    for (id, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.recv().payload, format!("client {id}").as_bytes());
    }
    // Start-up probes may still be closing; the four live segments stay.
    assert!(eventually(|| worker.mapped_segments() == 4));
}

#[test]
fn a_frame_over_the_limit_ends_that_connection_with_a_protocol_error() {
    let (_dir, worker) = started("too_large", &["--max-frame-bytes", "4096"]);
    let mut client = worker.connect();
    client.call(1, "echo", Codec::Raw, &[0; 5000]);
    client.expect_protocol_error_and_close();
    let mut other = worker.connect();
    other.send(&Frame::ping(2));
    assert_eq!(other.recv().kind, Kind::Pong);
}

#[test]
fn a_garbage_frame_ends_that_connection_with_a_protocol_error() {
    let (_dir, worker) = started("garbage", &[]);
    let mut client = worker.connect();
    client.send_raw(&[0x5a; 64]);
    client.expect_protocol_error_and_close();
    let mut other = worker.connect();
    other.send(&Frame::ping(2));
    assert_eq!(other.recv().kind, Kind::Pong);
}

/// A client that also maps its segment raw, to write what no honest producer would.
struct HostileClient {
    client: Client,
    base: *mut u8,
    len: usize,
}

impl HostileClient {
    fn connect(socket: &Path) -> Self {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(HANG_BOUND)).unwrap();
        let mut hello = [0u8; handshake::HELLO.len()];
        let (n, fd) = fd_passing::recv_with_fd(&stream, &mut hello).unwrap();
        assert_eq!((n, hello), (hello.len(), handshake::HELLO));
        let fd: OwnedFd = fd.expect("the segment's descriptor");
        let file = File::from(fd);
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a fresh shared mapping of the whole sealed memfd (its size cannot change);
        // the test only writes plain bytes through it and unmaps it in Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let side = ClientSide::attach(file.try_clone().unwrap()).unwrap();
        Self {
            client: Client { stream, side },
            base: base.cast(),
            len,
        }
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        assert!(offset + 8 <= self.len);
        // SAFETY: in bounds of the live mapping (checked above), 8-byte aligned by the
        // layout; an unaligned-safe write of plain bytes the worker reads atomically.
        unsafe { std::ptr::write_unaligned(self.base.add(offset).cast::<u64>(), value) };
    }

    fn read_u64(&self, offset: usize) -> u64 {
        assert!(offset + 8 <= self.len);
        // SAFETY: as in `write_u64`.
        unsafe { std::ptr::read_unaligned(self.base.add(offset).cast::<u64>()) }
    }

    /// Offset of the request ring's control block (header field at 32).
    fn request_ring(&self) -> usize {
        self.read_u64(32) as usize
    }

    fn response_ring(&self) -> usize {
        self.read_u64(48) as usize
    }
}

/// Writes random bytes at random places of a segment from its own thread: headers, ring
/// indices, futex words and records alike, as a hostile client process could. Paced, so that
/// the worker reads many scribbled records before a write to an index or the state word
/// makes the connection's end certain.
struct Scribbler {
    /// Start of the hostile mapping, as an address: the thread only needs where to write.
    base: usize,
    len: usize,
    /// xorshift64* state; never 0.
    state: u64,
}

impl Scribbler {
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Scribbles until `stop` is set.
    fn run(mut self, stop: &AtomicBool) {
        // Relaxed: a flag; the scribbling itself needs no order.
        while !stop.load(Ordering::Relaxed) {
            let random = self.next();
            let at = (random >> 8) as usize % self.len;
            // SAFETY: `at < len`, inside the mapping that the HostileClient owning it keeps
            // alive until after this thread is joined. Atomic, because this process's own
            // client endpoints read the same memory.
            let byte = unsafe { AtomicU8::from_ptr((self.base + at) as *mut u8) };
            byte.store(random as u8, Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(10));
        }
    }
}

impl HostileClient {
    fn scribbler(&self, seed: u64) -> Scribbler {
        Scribbler {
            base: self.base as usize,
            len: self.len,
            state: seed | 1,
        }
    }
}

impl Drop for HostileClient {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `connect`, used by nothing after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

const TAIL: usize = 128;
const HEAD: usize = 0;
const DATA: usize = 384;

fn assert_worker_still_serves(worker: &Worker) {
    let mut other = worker.connect();
    other.call(5, "echo", Codec::Raw, b"unaffected");
    assert_eq!(other.recv().payload, b"unaffected");
}

#[test]
fn a_request_index_out_of_range_ends_that_connection_with_a_protocol_error() {
    let (dir, worker) = started("bad_tail", &[]);
    let mut hostile = HostileClient::connect(&socket_in(&dir));
    let ring = hostile.request_ring();
    hostile.write_u64(ring + TAIL, 12_345);
    hostile.client.expect_protocol_error_and_close();
    assert_worker_still_serves(&worker);
}

#[test]
fn a_record_length_beyond_the_data_ends_that_connection_with_a_protocol_error() {
    let (dir, worker) = started("bad_len", &[]);
    let mut hostile = HostileClient::connect(&socket_in(&dir));
    let ring = hostile.request_ring();
    // A frame record (kind 1) claiming 2 GiB, published as 16 bytes.
    hostile.write_u64(ring + DATA, 0x7fff_fff0 | (1 << 32));
    hostile.write_u64(ring + TAIL, 16);
    hostile.client.expect_protocol_error_and_close();
    assert_worker_still_serves(&worker);
}

#[test]
fn a_response_index_out_of_range_closes_that_connection() {
    let (dir, worker) = started("bad_head", &["--ring-bytes", "4096"]);
    let mut hostile = HostileClient::connect(&socket_in(&dir));
    let ring = hostile.response_ring();
    hostile.write_u64(ring + HEAD, u64::MAX - 7);
    // The worker reloads the client's index once its cached copy says the ring is full:
    // four replies of a kilobyte get it there.
    for id in 0..5 {
        hostile.client.call(id, "echo", Codec::Raw, &[0; 1000]);
    }
    let closed = eventually(|| {
        hostile.client.side.state.is_closed() || peer_hung_up(&hostile.client.stream).unwrap()
    });
    assert!(
        closed,
        "the worker kept a connection whose response ring is corrupt"
    );
    assert_worker_still_serves(&worker);
}

/// The worker reads a segment that another thread of the client scribbles over while calls
/// flow through it. Whatever it reads (torn headers, impossible indices, garbage frames, a
/// rewritten state word), it ends that connection (ProtocolError, or a closed segment) and
/// goes on serving others.
#[test]
fn a_segment_scribbled_over_while_in_use_ends_only_that_connection() {
    let (dir, mut worker) = started("scribble", &["--ring-bytes", "4096"]);
    let seed = monotonic_now_ns();
    eprintln!("scribbler seed: {seed}");
    let call = Frame::call(1, "echo", Codec::Raw, &[0x42; 100]).encode_to_vec();
    for round in 0..8 {
        let mut hostile = HostileClient::connect(&socket_in(&dir));
        let scribbler = hostile.scribbler(seed.wrapping_add(round));
        let stop = AtomicBool::new(false);
        let ended = std::thread::scope(|scope| {
            scope.spawn(|| scribbler.run(&stop));
            let client = &mut hostile.client;
            let started = Instant::now();
            let mut ended = false;
            while !ended && started.elapsed() < HANG_BOUND {
                // Both ends of this client are scribbled too: any result is fine, only the
                // worker's verdict counts.
                let _ = client.side.requests.push(&call);
                if let Ok(reply) = client.side.responses.pop() {
                    reply.consume();
                }
                ended = peer_hung_up(&client.stream).unwrap_or(true);
            }
            // Relaxed: a flag; the scope joins the scribbler before the mapping goes.
            stop.store(true, Ordering::Relaxed);
            ended
        });
        assert!(
            ended,
            "round {round}: the worker kept a scribbled connection"
        );
    }
    assert_worker_still_serves(&worker);
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker died: {}",
        worker.stderr()
    );
}

#[test]
fn a_client_that_stops_reading_its_replies_is_disconnected_after_the_grace_period() {
    let (_dir, mut worker) = started("not_reading", &["--ring-bytes", "4096"]);
    let mut client = worker.connect();
    // Three replies of a kilobyte fill the 4 KiB response ring; the fourth finds no room.
    for id in 0..4 {
        client.call(id, "echo", Codec::Raw, &[0; 1000]);
    }
    let closed =
        eventually(|| client.side.state.is_closed() || peer_hung_up(&client.stream).unwrap());
    assert!(closed, "the worker kept a client that does not read");
    assert_worker_still_serves(&worker);
    worker.signal(libc::SIGTERM);
    assert!(worker.wait().success());
    let stderr = worker.stderr();
    assert!(stderr.contains("left its response ring full"), "{stderr}");
}

/// An example binary of this package. `cargo test` builds examples, but a run filtered to
/// one test target does not, so a missing one is built here.
fn example(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps; examples land in
    // target/<profile>/examples.
    let path = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-p", "molt-worker", "--example", name])
            .status()
            .unwrap();
        assert!(
            built.success() && path.exists(),
            "cannot build example {name}"
        );
    }
    path
}

/// Starts the connect helper and waits for its one-line verdict.
fn connect_helper(mut command: Command) -> (Child, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start shm_connect");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim_end().to_owned())
}

#[test]
fn a_killed_client_has_its_segment_unmapped_and_its_descriptors_closed() {
    let (dir, worker) = started("kill_client", &[]);
    // Warm up: the first connection starts threads and buffers that stay.
    drop(worker.connect());
    assert!(eventually(|| worker.mapped_segments() == 0));
    let fds_before = worker.open_fds();
    let mut helper = Command::new(example("shm_connect"));
    helper.arg(socket_in(&dir));
    let (mut child, verdict) = connect_helper(helper);
    assert_eq!(verdict, "attached");
    assert!(eventually(|| worker.mapped_segments() == 1));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        eventually(|| worker.mapped_segments() == 0),
        "segment still mapped"
    );
    assert!(
        eventually(|| worker.open_fds() <= fds_before),
        "descriptors still open"
    );
}

#[test]
fn a_client_that_drops_its_connection_has_its_segment_unmapped_and_running_call_cancelled() {
    let (_dir, worker) = started("drop_client", &["--compute-threads", "1"]);
    let mut client = worker.connect();
    client.call(1, "spin", Codec::Json, br#"{"ms": 20000}"#);
    std::thread::sleep(Duration::from_millis(20));
    drop(client);
    assert!(
        eventually(|| worker.mapped_segments() == 0),
        "segment still mapped"
    );
    // The one compute thread is free again only if the spin's token fired.
    let mut next = worker.connect();
    next.call(2, "sleep", Codec::Json, br#"{"ms": 0}"#);
    let reply = next.recv();
    assert_eq!((reply.request_id, reply.status), (2, Status::Ok));
}

#[test]
fn a_client_of_another_uid_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can run a client as another user here");
        return;
    }
    let Ok(setpriv) = which("setpriv") else {
        eprintln!("skipped: setpriv is not installed");
        return;
    };
    let dir = TempDir::new("foreign");
    // The foreign client must be able to reach the socket to be refused by uid, not by
    // file permissions: a worker-owned directory others may enter, made before the worker.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir.path())
        .unwrap();
    let worker_dir = dir.path().join("open");
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(&worker_dir)
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // The worker refuses a group/world-accessible directory, so listen through a private
    // one and expose the socket with a hard link in the open directory.
    let private = worker_dir.join("private");
    let mut worker = Worker::start(&private.join("worker.sock"), &[]);
    let exposed = worker_dir.join("exposed.sock");
    std::fs::hard_link(private.join("worker.sock"), &exposed).unwrap();
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A copy the other user can execute: the build tree may be closed to it.
    let helper = worker_dir.join("shm_connect");
    std::fs::copy(example("shm_connect"), &helper).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new(setpriv);
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&helper)
        .arg(&exposed);
    let (mut child, verdict) = connect_helper(command);
    assert!(verdict.starts_with("refused:"), "{verdict}");
    assert!(!child.wait().unwrap().success());
    // Accepted after the refused one, so that one has been handed to its thread, which
    // SIGTERM waits for.
    let mut own = worker.connect();
    own.send(&Frame::ping(1));
    assert_eq!(own.recv().kind, Kind::Pong);
    worker.signal(libc::SIGTERM);
    assert!(worker.wait().success());
    let stderr = worker.stderr();
    assert!(
        stderr.contains("refused a connection from uid 65534"),
        "{verdict}\n{stderr}"
    );
}

fn which(program: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}

#[test]
fn the_socket_directory_is_created_private() {
    let dir = TempDir::new("mkdir");
    let socket = dir.path().join("nested").join("worker.sock");
    let _worker = Worker::start(&socket, &[]);
    for created in [dir.path(), &dir.path().join("nested")] {
        let mode = std::fs::metadata(created).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", created.display());
    }
}

#[test]
fn a_directory_others_can_enter_is_refused() {
    let dir = TempDir::new("open_dir");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir.path())
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut worker = Worker::spawn(&socket_in(&dir), &[]);
    assert_eq!(worker.wait().code(), Some(1));
    let stderr = worker.stderr();
    assert!(
        stderr.contains("mode 0700") && stderr.contains("0755"),
        "{stderr}"
    );
    assert!(!socket_in(&dir).exists());
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = TempDir::new("stale");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir.path())
        .unwrap();
    // A socket nobody accepts on any more: what a worker killed with SIGKILL leaves.
    drop(UnixListener::bind(socket_in(&dir)).unwrap());
    assert!(socket_in(&dir).exists());
    let worker = Worker::start(&socket_in(&dir), &[]);
    let mut client = worker.connect();
    client.send(&Frame::ping(1));
    assert_eq!(client.recv().kind, Kind::Pong);
}

#[test]
fn a_socket_with_a_live_worker_is_refused() {
    let (dir, first) = started("live", &[]);
    let mut second = Worker::spawn(&socket_in(&dir), &[]);
    assert_eq!(second.wait().code(), Some(1));
    assert!(second.stderr().contains("another worker is listening"));
    let mut client = first.connect();
    client.send(&Frame::ping(1));
    assert_eq!(client.recv().kind, Kind::Pong);
}

#[test]
fn sigterm_answers_calls_in_flight_removes_the_socket_and_exits_zero() {
    let (dir, mut worker) = started("sigterm", &[]);
    let mut client = worker.connect();
    client.call(1, "spin", Codec::Json, br#"{"ms": 20000}"#);
    std::thread::sleep(Duration::from_millis(20));
    worker.signal(libc::SIGTERM);
    let reply = client.recv();
    assert_eq!((reply.request_id, reply.status), (1, Status::Cancelled));
    assert!(worker.wait().success());
    assert!(!socket_in(&dir).exists(), "socket left behind");
}

#[test]
fn stdio_and_socket_are_served_together_and_stdin_eof_removes_the_socket() {
    let dir = TempDir::new("both");
    let mut worker = Worker::start(&socket_in(&dir), &["--stdio"]);
    let mut client = worker.connect();
    client.call(1, "echo", Codec::Raw, b"over shm");
    assert_eq!(client.recv().payload, b"over shm");
    let mut stdin = worker.child.stdin.take().unwrap();
    let ping = Frame::ping(2).encode_to_vec();
    stdin.write_all(&(ping.len() as u32).to_le_bytes()).unwrap();
    stdin.write_all(&ping).unwrap();
    drop(stdin);
    assert!(worker.wait().success());
    assert!(!socket_in(&dir).exists(), "socket left behind");
}

#[test]
fn after_sigkill_only_the_socket_file_remains_and_it_refuses_connections() {
    let (dir, mut worker) = started("dead", &[]);
    worker.signal(libc::SIGKILL);
    worker.wait();
    // SIGKILL leaves the socket file; connecting to it is refused, not hung.
    assert!(socket_in(&dir).exists());
    let err = handshake::connect(&socket_in(&dir), HANG_BOUND)
        .err()
        .unwrap();
    assert!(matches!(err, HandshakeError::Io(_)), "{err}");
}

/// Stops the worker with SIGSTOP and waits until the kernel reports it stopped.
fn stop_worker(worker: &Worker) {
    worker.signal(libc::SIGSTOP);
    let stopped = eventually(|| {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", worker.pid())).unwrap();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    });
    assert!(stopped, "the worker did not stop");
}

/// Bound of the handshakes against a stopped worker; the test allows ten times as much.
const HANDSHAKE_BOUND: Duration = Duration::from_millis(500);

/// `handshake::connect` on another thread: its error, or a failure once it has run ten times
/// its bound (the thread is then left behind, blocked).
fn handshake_error_within_bound(socket: &Path) -> HandshakeError {
    let socket = socket.to_owned();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(handshake::connect(&socket, HANDSHAKE_BOUND).map(drop));
    });
    match result.recv_timeout(10 * HANDSHAKE_BOUND) {
        Ok(outcome) => outcome.expect_err("a handshake with a stopped worker"),
        Err(_) => panic!("the handshake ran past ten times its bound"),
    }
}

#[test]
fn a_handshake_with_a_stopped_worker_times_out() {
    let (dir, worker) = started("stopped", &[]);
    stop_worker(&worker);
    let err = handshake_error_within_bound(&socket_in(&dir));
    assert!(matches!(err, HandshakeError::Io(_)), "{err}");
}

#[test]
fn a_handshake_with_a_stopped_worker_whose_backlog_is_full_times_out() {
    let (dir, worker) = started("backlog", &[]);
    stop_worker(&worker);
    // Connections the stopped worker never accepts, until the kernel's queue for it is full.
    let mut queued = Vec::new();
    loop {
        let deadline = Instant::now() + Duration::from_millis(20);
        match molt_ipc_ring::platform::connect::connect_before(&socket_in(&dir), deadline) {
            Ok(stream) => queued.push(stream),
            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => break,
            Err(err) => panic!("connect {}: {err}", queued.len()),
        }
        assert!(queued.len() < 1 << 17, "the backlog never filled");
    }
    let err = handshake_error_within_bound(&socket_in(&dir));
    assert!(matches!(err, HandshakeError::Io(_)), "{err}");
    // Killed in Drop, still stopped, with these connections in its queue.
    drop(queued);
}

/// A client that stops reading with its response ring full holds up only its own
/// connection: the worker's timer answers another client's calls at their deadlines, and
/// SIGTERM still ends the worker (the stuck client's replies wait in its outbox for at most
/// the one-second grace). Before replies were queued, the timer wrote the stuck client's
/// Timeout into the full ring itself, waiting up to a second with every other deadline held
/// up behind it.
#[test]
fn a_client_that_stops_reading_delays_no_other_clients_timeouts() {
    let dir = TempDir::new("stuck-reader");
    let mut worker = Worker::start(&socket_in(&dir), &["--ring-bytes", "65536"]);
    let mut stuck = worker.connect();
    let mut prompt = worker.connect();
    let soon = |ms: u64| monotonic_now_ns() + ms * 1_000_000;
    // Calls whose Timeouts the timer must reply into the stuck client's ring...
    for request_id in 0..2 {
        stuck.send(
            &Frame::call(
                request_id,
                "sleep",
                Codec::MsgPack,
                &msgpack(&json!({"ms": 60_000})),
            )
            .with_deadline_ns(soon(50)),
        );
    }
    // ...once echo replies have filled it: 8 KiB each, the ring holds 64 KiB.
    for request_id in 10..22 {
        stuck.call(request_id, "echo", Codec::Raw, &[7u8; 8192]);
    }
    // Deadlines 20 ms away; "late" means held up past what scheduling on a loaded machine
    // explains, well under the second a blocked timer would have added.
    let late_ns = 400_000_000;
    for request_id in 100..120 {
        let deadline = soon(20);
        prompt.send(
            &Frame::call(
                request_id,
                "sleep",
                Codec::MsgPack,
                &msgpack(&json!({"ms": 5_000})),
            )
            .with_deadline_ns(deadline),
        );
        let reply = prompt.recv();
        let answered = monotonic_now_ns();
        assert_eq!(
            (reply.request_id, reply.status),
            (request_id, Status::Timeout)
        );
        assert!(
            answered < deadline + late_ns,
            "call {request_id}: Timeout {} ms after its deadline",
            (answered - deadline) / 1_000_000
        );
    }
    worker.signal(libc::SIGTERM);
    assert!(worker.wait().success());
}
