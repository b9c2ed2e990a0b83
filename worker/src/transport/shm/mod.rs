//! The shared-memory transport: clients connect to a unix socket, each connection gets its
//! own segment (request ring, response ring) and its own thread, and every connection feeds
//! the one dispatcher, so Busy, deadlines, cancels and metrics behave exactly as on stdio.
//!
//! - The socket lives in a directory only this user can enter ([`socket`]); peers of another
//!   uid are refused before any segment exists (`SO_PEERCRED`).
//! - A connection thread spins on its request ring for the configured window, then sleeps on
//!   the ring's futex. The socket stays open as the liveness channel: one watcher thread
//!   polls every connection's socket and closes the segment of a client that hung up (or was
//!   killed), which wakes its connection thread at once: its calls are cancelled and its
//!   segment unmapped. An idle connection costs no CPU, however many there are.
//! - Replies are written straight into the response ring by whichever thread decides them
//!   ([`connection`]); the client is woken only if it announced that it sleeps.
//! - Anything wrong in a segment (indices, lengths, frames) ends that connection with a
//!   ProtocolError; other connections never notice.

mod connection;
mod liveness;
mod socket;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use molt_ipc_ring::lock::{Mutex, MutexGuard};
use molt_ipc_ring::segment::SegmentConfig;
use molt_ipc_ring::wait::WaitConfig;

use self::connection::ConnectionSettings;
use self::liveness::Liveness;
use self::socket::BoundSocket;
use self::socket::SocketError;
use crate::config::SocketConfig;
use crate::dispatcher::Dispatcher;

/// Longest futex sleep of an idle connection thread. Every event that ends a connection wakes
/// it (see `liveness`), so this only bounds how long a missed one could go unnoticed; a
/// wake-up per second costs nothing measurable.
const IDLE_SLICE_NS: u64 = 1_000_000_000;

/// Pause after a failed `accept` (out of descriptors, ...), so the loop cannot spin on it.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// The listening socket and the threads serving its connections. Shared between the thread
/// running [`Shm::run`] and whoever stops it ([`Shm::stop`]).
pub struct Shm {
    socket: BoundSocket,
    dispatcher: Arc<Dispatcher>,
    liveness: Arc<Liveness>,
    settings: ConnectionSettings,
    /// Set once by `stop`: the accept loop and every connection thread end.
    stopping: Arc<AtomicBool>,
    /// Connection threads not yet joined; finished ones are reaped on each accept.
    connections: Mutex<Vec<JoinHandle<()>>>,
}

impl Shm {
    /// Listens on the configured socket: creates its directory or checks that it is private,
    /// and replaces a stale socket. Fails if another worker listens there.
    pub fn bind(
        config: &SocketConfig,
        dispatcher: &Arc<Dispatcher>,
        max_frame_bytes: usize,
    ) -> Result<Self, SocketError> {
        let socket = BoundSocket::bind(&config.path)?;
        let liveness = Liveness::start()
            .map_err(|err| SocketError::Io("start watching", config.path.clone(), err))?;
        Ok(Self {
            socket,
            dispatcher: Arc::clone(dispatcher),
            liveness,
            settings: ConnectionSettings {
                segment: SegmentConfig {
                    request_capacity: config.ring_bytes,
                    response_capacity: config.ring_bytes,
                },
                wait: WaitConfig {
                    spin: config.spin,
                    sleep_slice_ns: IDLE_SLICE_NS,
                },
                max_frame_bytes,
            },
            stopping: Arc::new(AtomicBool::new(false)),
            connections: Mutex::new(Vec::new()),
        })
    }

    /// Where the socket listens.
    pub fn path(&self) -> &Path {
        self.socket.path()
    }

    /// Accepts connections until [`Shm::stop`]; returns once every connection has ended.
    pub fn run(&self) {
        for stream in self.socket.listener.incoming() {
            // Relaxed: `stop` wakes this loop with a connection after setting the flag; the
            // connect and accept syscalls order the two.
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            match stream {
                Ok(stream) => self.spawn_connection(stream),
                Err(err) => {
                    log::warn!("accept on {}: {err}", self.path().display());
                    std::thread::sleep(ACCEPT_RETRY);
                }
            }
        }
        self.join_connections();
    }

    /// Stops accepting, ends every connection (calls in flight are answered Cancelled, then
    /// each segment is closed) and removes the socket file; returns when all that is done.
    /// Makes [`Shm::run`] return. Idempotent.
    pub fn stop(&self) {
        // Relaxed: see `run`. Set before the watcher closes the segments, so the woken
        // connection threads know why.
        if !self.stopping.swap(true, Ordering::Relaxed) {
            self.liveness.stop();
            // Wakes the blocking accept; the connection is dropped unserved.
            if let Err(err) = UnixStream::connect(self.path()) {
                log::warn!(
                    "cannot wake the accept loop on {}: {err}",
                    self.path().display()
                );
            }
        }
        self.join_connections();
        self.socket.remove();
    }

    fn join_connections(&self) {
        let connections = std::mem::take(&mut *self.lock_connections());
        for thread in connections {
            // A connection thread only ends by returning: nothing it runs panics on input.
            let _ = thread.join();
        }
    }

    fn spawn_connection(&self, stream: UnixStream) {
        let mut connections = self.lock_connections();
        connections.retain(|thread| !thread.is_finished());
        let dispatcher = Arc::clone(&self.dispatcher);
        let settings = self.settings;
        let liveness = Arc::clone(&self.liveness);
        let stopping = Arc::clone(&self.stopping);
        let spawned = std::thread::Builder::new()
            .name("molt-shm-conn".into())
            .spawn(move || connection::serve(stream, &dispatcher, &liveness, &settings, &stopping));
        match spawned {
            Ok(thread) => connections.push(thread),
            Err(err) => log::error!("cannot start a connection thread: {err}"),
        }
    }

    fn lock_connections(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.connections.lock()
    }
}
