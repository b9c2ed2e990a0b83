//! The control-socket handshake that hands a segment from the worker to a client.
//!
//! 1. The client connects to the worker's unix socket.
//! 2. Each side checks the other's uid (`SO_PEERCRED`) equals its own: the worker serves
//!    only its own user, and the client only talks to a worker of its own user.
//! 3. The worker creates a segment and sends [`HELLO`] (8 bytes) with the memfd attached
//!    (`SCM_RIGHTS`).
//! 4. The client checks the hello, the seals and the header, and maps the segment.
//!
//! [`worker_side`] runs the worker's half on an accepted stream and [`client_side`] the
//! client's on a connected one (both named after the [`WorkerSide`] and [`ClientSide`] they
//! return); [`connect`] is the client's whole handshake from a socket path, within one
//! timeout.
//!
//! Afterwards the socket carries nothing; it stays open as the liveness channel. Either side
//! sees the other's death as end-of-stream ([`peer_hung_up`](crate::platform::peer::peer_hung_up)).
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use molt_ipc_ring::handshake;
//! use molt_ipc_ring::segment::SegmentConfig;
//!
//! let (worker_end, client_end) = UnixStream::pair().unwrap();
//! let mut worker = handshake::worker_side(&worker_end, &SegmentConfig::default()).unwrap();
//! let mut client = handshake::client_side(&client_end).unwrap();
//! client.requests.push(b"hi").unwrap();
//! assert_eq!(worker.requests.pop().unwrap().len(), 2);
//! ```

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::platform::connect::{connect_before, time_left, timed_out};
use crate::platform::{fd_passing, peer};
use crate::segment::{AttachError, ClientSide, SegmentConfig, WorkerSide};

/// The message that carries the segment's descriptor: `"MOLTSHM"` and the layout version.
pub const HELLO: [u8; 8] = *b"MOLTSHM\x01";

/// Why a handshake failed.
///
/// ```
/// use molt_ipc_ring::handshake::HandshakeError;
/// assert_eq!(HandshakeError::ForeignPeer { uid: 7 }.to_string(), "peer runs as uid 7, not as this user");
/// ```
#[derive(Debug)]
pub enum HandshakeError {
    /// The socket failed, or timed out.
    Io(io::Error),
    /// The other end belongs to another user.
    ForeignPeer {
        /// The peer's uid as the kernel reports it.
        uid: u32,
    },
    /// The worker closed the socket before sending a segment.
    PeerClosed,
    /// The worker sent something other than [`HELLO`] with one descriptor.
    BadHello,
    /// The segment was refused.
    Attach(AttachError),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "control socket: {e}"),
            Self::ForeignPeer { uid } => write!(f, "peer runs as uid {uid}, not as this user"),
            Self::PeerClosed => {
                f.write_str("worker closed the control socket during the handshake")
            }
            Self::BadHello => f.write_str("worker sent an unexpected handshake message"),
            Self::Attach(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Refuses a peer whose uid is not ours.
///
/// ```
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// molt_ipc_ring::handshake::require_same_user(&a).unwrap();
/// ```
pub fn require_same_user(stream: &UnixStream) -> Result<(), HandshakeError> {
    let uid = peer::peer_uid(stream)?;
    if uid == peer::own_uid() {
        Ok(())
    } else {
        Err(HandshakeError::ForeignPeer { uid })
    }
}

/// Worker side, for one accepted connection: checks the peer's uid, creates a segment and
/// sends it. The caller keeps `stream` open as the liveness channel.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use molt_ipc_ring::{handshake, segment::SegmentConfig};
/// let (worker_end, _client_end) = UnixStream::pair().unwrap();
/// let worker = handshake::worker_side(&worker_end, &SegmentConfig::default()).unwrap();
/// assert!(!worker.state.is_closed());
/// ```
pub fn worker_side(
    stream: &UnixStream,
    config: &SegmentConfig,
) -> Result<WorkerSide, HandshakeError> {
    require_same_user(stream)?;
    let (worker, file) = WorkerSide::create(config)?;
    fd_passing::send_with_fd(stream, &HELLO, file.as_fd())?;
    Ok(worker)
}

/// Client side, on a connected stream: checks the worker's uid, receives the segment and
/// attaches it. Blocks until the worker answers; [`connect`] bounds the whole handshake.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use molt_ipc_ring::handshake::{self, HandshakeError};
/// let (worker_end, client_end) = UnixStream::pair().unwrap();
/// drop(worker_end);
/// assert!(matches!(handshake::client_side(&client_end), Err(HandshakeError::PeerClosed)));
/// ```
pub fn client_side(stream: &UnixStream) -> Result<ClientSide, HandshakeError> {
    receive_segment(stream, None)
}

/// [`client_side`], with every read bounded by `deadline` (the stream's read timeout is left set;
/// the caller clears it).
fn receive_segment(
    stream: &UnixStream,
    deadline: Option<Instant>,
) -> Result<ClientSide, HandshakeError> {
    require_same_user(stream)?;
    let mut hello = [0u8; HELLO.len()];
    let mut filled = 0;
    let mut segment_fd = None;
    while filled < hello.len() {
        if let Some(deadline) = deadline {
            stream.set_read_timeout(Some(time_left(deadline, "handshake")?))?;
        }
        let (n, fd) = match fd_passing::recv_with_fd(stream, &mut hello[filled..]) {
            Ok(received) => received,
            // What an expired read timeout reports on Linux.
            Err(e) if deadline.is_some() && e.kind() == io::ErrorKind::WouldBlock => {
                return Err(timed_out("handshake").into())
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(HandshakeError::PeerClosed);
        }
        if fd.is_some() {
            if segment_fd.is_some() {
                return Err(HandshakeError::BadHello);
            }
            segment_fd = fd;
        }
        filled += n;
    }
    let fd = match segment_fd {
        Some(fd) if hello == HELLO => fd,
        _ => return Err(HandshakeError::BadHello),
    };
    ClientSide::attach(fd.into()).map_err(HandshakeError::Attach)
}

/// Client side, from a socket path: connects and runs [`client_side`], the whole of it (the
/// connect, which a full listen backlog would otherwise block without bound, and every read
/// of the worker's answer) within `timeout`; past it, [`HandshakeError::Io`] with
/// [`io::ErrorKind::TimedOut`]. Returns the stream (keep it: it is the liveness channel),
/// blocking and without timeouts, with the client's endpoints.
///
/// ```no_run
/// use std::time::Duration;
/// let (stream, client) = molt_ipc_ring::handshake::connect("/run/molt/worker.sock".as_ref(), Duration::from_secs(5)).unwrap();
/// # drop((stream, client));
/// ```
pub fn connect(path: &Path, timeout: Duration) -> Result<(UnixStream, ClientSide), HandshakeError> {
    let deadline = Instant::now() + timeout;
    let stream = connect_before(path, deadline)?;
    let client = receive_segment(&stream, Some(deadline))?;
    stream.set_read_timeout(None)?;
    Ok((stream, client))
}
