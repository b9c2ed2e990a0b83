//! Who is on the other end of a unix socket, and is it still there.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::getuid;

/// The uid of the process that connected (or accepted) the other end of `stream`, as the
/// kernel recorded it at `connect` time (`SO_PEERCRED`): the peer cannot forge it.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use molt_ipc_ring::platform::peer;
/// let (a, _b) = UnixStream::pair().unwrap();
/// assert_eq!(peer::peer_uid(&a).unwrap(), peer::own_uid());
/// ```
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    Ok(getsockopt(stream, PeerCredentials)?.uid())
}

/// The real uid of this process.
///
/// ```
/// use molt_ipc_ring::platform::peer::own_uid;
/// let _uid: u32 = own_uid();
/// ```
pub fn own_uid() -> u32 {
    getuid().as_raw()
}

/// Whether the peer has closed its end of `stream` (or the socket failed), without blocking
/// and without consuming any data.
///
/// A process killed with `SIGKILL` has its descriptors closed by the kernel, so this notices
/// a dead peer within one call.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use molt_ipc_ring::platform::peer::peer_hung_up;
/// let (a, b) = UnixStream::pair().unwrap();
/// assert!(!peer_hung_up(&a).unwrap());
/// drop(b);
/// assert!(peer_hung_up(&a).unwrap());
/// ```
pub fn peer_hung_up(stream: &UnixStream) -> io::Result<bool> {
    // libc rather than nix: nix's PollFlags knows no POLLRDHUP and drops unknown bits from
    // revents. POLLRDHUP reports the peer's shutdown even when unread data is still queued.
    let mut fds = [libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    }];
    loop {
        // SAFETY: `fds` is a valid array of one pollfd for the duration of the call, and the
        // descriptor stays open because `stream` is borrowed; timeout 0 never blocks.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        if rc >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    Ok(fds[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
}
