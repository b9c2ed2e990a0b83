//! Anonymous shared memory files (memfd) with size seals.
//!
//! A memfd has no name in any file system (nothing in `/dev/shm`, nothing left behind when a
//! process is killed), is only reachable through its file descriptor (so it is as private as
//! the socket that carries it), and its pages go away with the last descriptor and mapping.
//!
//! Seals make its size immutable: without `F_SEAL_SHRINK` the creator could truncate the file
//! under the other side's mapping and turn its next access into `SIGBUS`. The receiving side
//! therefore checks the seals before it maps anything ([`verify_sealed`]).

use std::fs::File;
use std::io;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::unistd::ftruncate;

/// The seals every segment carries: its size can change neither way, and no seal can be
/// added or removed afterwards.
pub const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

/// Creates a memfd of `len` zeroed bytes, close-on-exec, sealed against resizing.
///
/// `name` only shows in `/proc/PID/fd` and `/proc/PID/maps`, for debugging.
///
/// ```
/// use molt_ipc_ring::platform::memfd;
/// let file = memfd::create_sealed(c"molt-doc", 4096).unwrap();
/// assert_eq!(memfd::verify_sealed(&file).unwrap(), 4096);
/// ```
pub fn create_sealed(name: &std::ffi::CStr, len: u64) -> io::Result<File> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment length exceeds off_t"))?;
    ftruncate(&fd, len)?;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(REQUIRED_SEALS))?;
    Ok(File::from(fd))
}

/// Checks that `file` carries at least [`REQUIRED_SEALS`] and returns its (now fixed) length.
///
/// A descriptor that is not a memfd, or a memfd whose size could still change, is refused
/// with `InvalidData`.
///
/// ```
/// use molt_ipc_ring::platform::memfd;
/// let unsealed = tempfile_like();
/// assert!(memfd::verify_sealed(&unsealed).is_err());
/// # fn tempfile_like() -> std::fs::File {
/// #     std::fs::File::open("/proc/self/exe").unwrap()
/// # }
/// ```
pub fn verify_sealed(file: &File) -> io::Result<u64> {
    let seals = fcntl(file, FcntlArg::F_GET_SEALS).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptor does not support seals",
        )
    })?;
    if !SealFlag::from_bits_retain(seals).contains(REQUIRED_SEALS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "segment is not sealed against resizing",
        ));
    }
    Ok(file.metadata()?.len())
}
