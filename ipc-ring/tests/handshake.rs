#![cfg(not(loom))]
//! The client's handshake is bounded as a whole: connect, and every read of the worker's
//! answer, within the one timeout given to `handshake::connect`.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use molt_ipc_ring::handshake::{self, HandshakeError};
use molt_ipc_ring::platform::fd_passing;
use molt_ipc_ring::segment::{SegmentConfig, WorkerSide};

const BOUND: Duration = Duration::from_millis(300);
/// Generous: only a handshake that ignores its bound takes this long.
const HANG_GUARD: Duration = Duration::from_millis(10 * 300);

/// A private directory for one test's socket, removed on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("molt-handshake-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("worker.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `handshake::connect` with [`BOUND`] on another thread; its result, or a failure if
/// it is still running after the hang guard (the thread is then left behind).
fn connect_with_guard(socket: PathBuf) -> Result<(), HandshakeError> {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(handshake::connect(&socket, BOUND).map(drop));
    });
    let started = Instant::now();
    let outcome = result
        .recv_timeout(HANG_GUARD)
        .unwrap_or_else(|_| panic!("handshake still running after {HANG_GUARD:?}"));
    assert!(started.elapsed() < HANG_GUARD);
    outcome
}

fn is_timeout(err: &HandshakeError) -> bool {
    matches!(err, HandshakeError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

#[test]
fn a_connect_to_a_full_backlog_times_out() {
    let dir = SocketDir::new("backlog");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    // Backlog 0: Linux queues one connection that nobody accepts, and parks the next
    // connecting thread until the listener accepts (what a stopped worker's full backlog does).
    // SAFETY: listen(2) on a socket we own; it touches no memory.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let _queued = UnixStream::connect(dir.socket()).unwrap();
    let err = connect_with_guard(dir.socket()).unwrap_err();
    assert!(is_timeout(&err), "{err}");
}

#[test]
fn a_worker_that_never_answers_times_out() {
    let dir = SocketDir::new("silent");
    let _listener = UnixListener::bind(dir.socket()).unwrap();
    let err = connect_with_guard(dir.socket()).unwrap_err();
    assert!(is_timeout(&err), "{err}");
}

/// Each byte of the hello arrives well within the bound, the whole well after it: a bound per
/// read would let this handshake succeed after eight times its timeout.
#[test]
fn a_worker_that_dribbles_its_hello_times_out() {
    let dir = SocketDir::new("dribble");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let worker = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let (_worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
        let hello = handshake::HELLO;
        fd_passing::send_with_fd(&stream, &hello[..1], file.as_fd()).unwrap();
        for byte in &hello[1..] {
            std::thread::sleep(BOUND / 2);
            // The client may have given up and closed: that is the expected outcome.
            if std::io::Write::write_all(&mut &stream, std::slice::from_ref(byte)).is_err() {
                break;
            }
        }
    });
    let err = connect_with_guard(dir.socket()).unwrap_err();
    assert!(is_timeout(&err), "{err}");
    worker.join().unwrap();
}

#[test]
fn a_worker_that_answers_in_time_is_connected_with_no_timeout_left_on_the_stream() {
    let dir = SocketDir::new("prompt");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let worker = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let worker = handshake::worker_side(&stream, &SegmentConfig::default()).unwrap();
        (stream, worker)
    });
    let (stream, mut client) = handshake::connect(&dir.socket(), BOUND).unwrap();
    assert_eq!(stream.read_timeout().unwrap(), None);
    assert_eq!(stream.write_timeout().unwrap(), None);
    client.requests.push(b"hi").unwrap();
    let (_stream, mut worker) = worker.join().unwrap();
    assert_eq!(worker.requests.pop().unwrap().len(), 2);
}
