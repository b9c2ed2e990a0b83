//! Sending one file descriptor, with a few bytes of message, over a unix stream socket
//! (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::cmsg_space;
use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Sends `message` with `fd` attached. The message must be non-empty: the descriptor travels
/// with its first byte.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use molt_ipc_ring::platform::{fd_passing, memfd};
/// let (a, b) = UnixStream::pair().unwrap();
/// let file = memfd::create_sealed(c"doc", 64).unwrap();
/// fd_passing::send_with_fd(&a, b"hello", std::os::fd::AsFd::as_fd(&file)).unwrap();
/// let mut buf = [0u8; 16];
/// let (n, fd) = fd_passing::recv_with_fd(&b, &mut buf).unwrap();
/// assert_eq!(&buf[..n], b"hello");
/// assert!(fd.is_some());
/// ```
pub fn send_with_fd(stream: &UnixStream, message: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    if message.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a descriptor needs a non-empty message",
        ));
    }
    let fds = [fd.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let mut sent = 0;
    while sent < message.len() {
        let iov = [IoSlice::new(&message[sent..])];
        // The descriptor rides on the first sendmsg only.
        let attached: &[ControlMessage] = if sent == 0 { &cmsgs } else { &[] };
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            attached,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and the descriptor attached to them, if any.
///
/// Returns `(0, None)` at end of stream. Received descriptors are close-on-exec. If the peer
/// attached more than one descriptor, or the control data was truncated, every received
/// descriptor is closed and the call fails with `InvalidData`: a well-behaved peer sends one.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use molt_ipc_ring::platform::fd_passing::recv_with_fd;
/// let (a, b) = UnixStream::pair().unwrap();
/// std::io::Write::write_all(&mut &a, b"no fd").unwrap();
/// let mut buf = [0u8; 8];
/// let (n, fd) = recv_with_fd(&b, &mut buf).unwrap();
/// assert_eq!((n, fd.is_none()), (5, true));
/// ```
pub fn recv_with_fd(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut received: Vec<OwnedFd> = Vec::new();
        let cmsgs = msg.cmsgs().map_err(io::Error::from)?;
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in our descriptor table for this
                    // message; nothing else owns it, so wrapping it makes us its only owner.
                    received.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) || received.len() > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "expected at most one descriptor",
            ));
        }
        return Ok((msg.bytes, received.pop()));
    }
}
