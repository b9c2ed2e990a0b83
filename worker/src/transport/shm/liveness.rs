//! One thread that watches every connection's control socket, so connection threads can
//! sleep on their futex without polling for their client's death.
//!
//! A client killed with SIGKILL cannot wake anybody; the kernel only closes its socket. This
//! thread `poll`s all sockets at once and, on end-of-stream, closes that connection's
//! segment, which wakes its sleeping connection thread at once. An idle connection thus costs
//! no CPU at all, however many there are, instead of one wake-up per sleep slice each.
//!
//! It also carries the worker's shutdown to every connection: calls in flight are answered
//! Cancelled, then each connection thread is woken to flush and close its segment.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use molt_ipc_ring::lock::Mutex;
use molt_ipc_ring::segment::SegmentState;

use crate::dispatcher::Session;

/// What the watcher needs of one connection.
struct Watched {
    id: u64,
    /// A duplicate of the connection's socket descriptor: ours to poll until we drop it.
    stream: UnixStream,
    state: Arc<SegmentState>,
    session: Arc<Session>,
    /// The connection thread is done with it; dropped on the watcher's next round.
    released: bool,
}

#[derive(Default)]
struct Registry {
    watched: Vec<Watched>,
    stopping: bool,
}

/// The watcher thread and its registry. Entries leave the registry only on the watcher
/// thread, so a descriptor it polls is never closed under it.
pub struct Liveness {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    /// Written to make the watcher rebuild its poll set (a connection came or went, or stop).
    poke: UnixStream,
    /// Read side of `poke`; the watcher polls it with the sockets.
    poked: UnixStream,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Registration of one connection; dropping it lets the watcher forget the connection.
pub struct Watch {
    liveness: Arc<Liveness>,
    id: u64,
}

impl Liveness {
    /// Starts the watcher thread.
    pub fn start() -> io::Result<Arc<Self>> {
        let (poke, poked) = UnixStream::pair()?;
        poke.set_nonblocking(true)?;
        poked.set_nonblocking(true)?;
        let liveness = Arc::new(Self {
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(0),
            poke,
            poked,
            thread: Mutex::new(None),
        });
        let watcher = Arc::clone(&liveness);
        let thread = std::thread::Builder::new()
            .name("molt-shm-liveness".into())
            .spawn(move || watcher.run())?;
        *liveness.thread.lock() = Some(thread);
        Ok(liveness)
    }

    /// Watches `stream` for the client's end: the segment is then closed, which wakes the
    /// connection thread. `None` once the worker is stopping: the caller should end.
    pub fn watch(
        self: &Arc<Self>,
        stream: &UnixStream,
        state: Arc<SegmentState>,
        session: Arc<Session>,
    ) -> io::Result<Option<Watch>> {
        let stream = stream.try_clone()?;
        // Relaxed: a unique number; nothing is published through it.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut registry = self.registry.lock();
            if registry.stopping {
                return Ok(None);
            }
            registry.watched.push(Watched {
                id,
                stream,
                state,
                session,
                released: false,
            });
        }
        self.wake_watcher();
        Ok(Some(Watch {
            liveness: Arc::clone(self),
            id,
        }))
    }

    /// Answers every connection's calls in flight Cancelled, wakes every connection thread
    /// (which sees the worker stopping, flushes and closes its segment), and ends the
    /// watcher. Idempotent.
    pub fn stop(&self) {
        self.registry.lock().stopping = true;
        self.wake_watcher();
        if let Some(thread) = self.thread.lock().take() {
            // The watcher only ends by returning.
            let _ = thread.join();
        }
    }

    fn wake_watcher(&self) {
        // A full socket buffer already holds a wake-up the watcher has not read: enough.
        let _ = (&self.poke).write(&[1]);
    }

    fn run(&self) {
        let mut fds = Vec::new();
        loop {
            {
                let mut registry = self.registry.lock();
                if registry.stopping {
                    let watched = std::mem::take(&mut registry.watched);
                    // Not under the lock: a reply may wait for room in its ring.
                    drop(registry);
                    for watched in watched {
                        watched.session.shutdown();
                        // Not closed here: its connection thread flushes what the client has
                        // yet to read, then closes the segment.
                        watched.state.wake_request_consumer();
                    }
                    return;
                }
                fds.clear();
                fds.push(pollfd(&self.poked, libc::POLLIN));
                fds.extend(
                    registry
                        .watched
                        .iter()
                        .map(|watched| pollfd(&watched.stream, libc::POLLRDHUP)),
                );
            }
            if let Err(err) = poll_forever(&mut fds) {
                log::error!("shared-memory liveness watcher: poll failed: {err}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            self.drain_pokes();
            let mut registry = self.registry.lock();
            // `fds[1..]` is in registry order: entries are only added at the end by others,
            // and only removed here.
            let mut index = 0;
            registry.watched.retain(|watched| {
                let revents = fds.get(index + 1).map_or(0, |fd| fd.revents);
                index += 1;
                let hung_up = revents
                    & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)
                    != 0;
                if hung_up && !watched.released {
                    watched.state.close();
                }
                !(hung_up || watched.released)
            });
        }
    }

    fn drain_pokes(&self) {
        let mut sink = [0u8; 64];
        while matches!((&self.poked).read(&mut sink), Ok(n) if n > 0) {}
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut registry = self.liveness.registry.lock();
        if let Some(watched) = registry.watched.iter_mut().find(|w| w.id == self.id) {
            watched.released = true;
        }
        drop(registry);
        self.liveness.wake_watcher();
    }
}

fn pollfd(stream: &UnixStream, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: stream.as_raw_fd(),
        events,
        revents: 0,
    }
}

/// Blocks until one of `fds` has an event; EINTR just polls again.
fn poll_forever(fds: &mut [libc::pollfd]) -> io::Result<()> {
    loop {
        // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfds for the whole call;
        // their descriptors stay open because only this thread drops registry entries.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}
