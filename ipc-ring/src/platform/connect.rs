//! Connecting to a unix stream socket within a deadline.
//!
//! `UnixStream::connect` can block without bound: when the listener's backlog is full (a
//! stopped or overwhelmed worker), the kernel parks the connecting thread until the listener
//! accepts. Linux bounds that wait by the socket's send timeout (`SO_SNDTIMEO`), which
//! `std` offers no way to set before connecting; so the socket is made here.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    connect, setsockopt, socket, sockopt::SendTimeout, AddressFamily, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;

/// The time left before `deadline`, or a `TimedOut` error naming `what` once none is.
///
/// ```
/// use std::time::{Duration, Instant};
/// use molt_ipc_ring::platform::connect::time_left;
/// let deadline = Instant::now() + Duration::from_secs(60);
/// assert!(time_left(deadline, "test").unwrap() > Duration::ZERO);
/// let err = time_left(Instant::now(), "test").unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// ```
pub fn time_left(deadline: Instant, what: &str) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(timed_out(what)),
    }
}

/// A `TimedOut` error for `what`.
pub(crate) fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// Connects to the unix socket at `path`, giving up with `TimedOut` at `deadline` if the
/// listener's backlog stays full. The stream is blocking and close-on-exec, with no timeouts
/// left set.
///
/// ```
/// use std::os::unix::net::UnixListener;
/// use std::time::{Duration, Instant};
/// use molt_ipc_ring::platform::connect::connect_before;
/// let dir = std::env::temp_dir().join(format!("molt-connect-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("s.sock");
/// let _ = std::fs::remove_file(&path);
/// let _listener = UnixListener::bind(&path).unwrap();
/// connect_before(&path, Instant::now() + Duration::from_secs(5)).unwrap();
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn connect_before(path: &Path, deadline: Instant) -> io::Result<UnixStream> {
    let address = UnixAddr::new(path)?;
    let socket = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    loop {
        let left = time_left(deadline, "connect")?;
        // At least 1 µs: a zero SO_SNDTIMEO means "no timeout".
        let micros = i64::try_from(left.as_micros()).unwrap_or(i64::MAX).max(1);
        let timeout = TimeVal::new(micros / 1_000_000, (micros % 1_000_000) as _);
        setsockopt(&socket, SendTimeout, &timeout)?;
        match connect(socket.as_raw_fd(), &address) {
            Ok(()) => break,
            // A signal during the wait: a unix socket stays unconnected until the listener
            // takes it, so the connect can simply be made again with the time left.
            Err(Errno::EINTR) => continue,
            // The send timeout ran out with the backlog still full.
            Err(Errno::EAGAIN) => return Err(timed_out("connect")),
            Err(e) => return Err(e.into()),
        }
    }
    setsockopt(&socket, SendTimeout, &TimeVal::new(0, 0))?;
    Ok(UnixStream::from(socket))
}
