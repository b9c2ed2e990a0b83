//! The control socket's place on disk: a private directory, a path that a stale socket from a
//! killed worker may still occupy, and removal on a clean exit.
//!
//! Nothing else of the transport touches the file system: segments are memfds, so after a
//! `kill -9` only the socket file can remain, and the next start replaces it.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use molt_ipc_ring::platform::peer::own_uid;

/// Why the worker cannot listen where it was told to; shown as one line at start-up.
#[derive(Debug)]
pub enum SocketError {
    /// The directory exists but another user owns it, or others may enter it.
    UnsafeDirectory {
        /// The socket's directory.
        dir: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// A worker is accepting connections on the path already.
    InUse(PathBuf),
    /// Something that is not a socket occupies the path.
    NotASocket(PathBuf),
    /// A system call failed.
    Io(&'static str, PathBuf, io::Error),
}

impl std::fmt::Display for SocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsafeDirectory { dir, uid, mode } => write!(
                f,
                "socket directory {} must belong to uid {} with no group or other access \
                 (mode 0700); it belongs to uid {uid} with mode {:04o}",
                dir.display(),
                own_uid(),
                mode & 0o7777
            ),
            Self::InUse(path) => write!(
                f,
                "another worker is listening on {}; stop it or choose another --socket",
                path.display()
            ),
            Self::NotASocket(path) => write!(
                f,
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
            Self::Io(what, path, err) => write!(f, "cannot {what} {}: {err}", path.display()),
        }
    }
}

impl std::error::Error for SocketError {}

/// A listening control socket that removes its path when dropped, if the path still names
/// the socket this worker created (a successor may have replaced it after a hang).
pub struct BoundSocket {
    /// Accepts clients.
    pub listener: UnixListener,
    path: PathBuf,
    /// `(dev, ino)` of the socket file right after bind.
    identity: (u64, u64),
}

impl BoundSocket {
    /// Prepares the directory, clears a stale socket, and listens on `path`.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        private_directory(dir)?;
        clear_stale(path)?;
        let listener = UnixListener::bind(path)
            .map_err(|err| SocketError::Io("listen on", path.to_owned(), err))?;
        let meta = fs::symlink_metadata(path)
            .map_err(|err| SocketError::Io("inspect", path.to_owned(), err))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Where the socket listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl BoundSocket {
    /// Removes the socket file if it is still the one this worker bound. Idempotent.
    pub fn remove(&self) {
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity);
        if ours {
            if let Err(err) = fs::remove_file(&self.path) {
                log::warn!("cannot remove {}: {err}", self.path.display());
            }
        }
    }
}

impl Drop for BoundSocket {
    /// Covers the ways out that skip [`BoundSocket::remove`]: a start-up failure after bind.
    fn drop(&mut self) {
        self.remove();
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or checks that an existing one is ours
/// and closed to everybody else: anyone who can enter it could connect, or replace the socket.
fn private_directory(dir: &Path) -> Result<(), SocketError> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) => return Err(SocketError::Io("create directory", dir.to_owned(), err)),
    }
    // Follows a symlink on purpose: what matters is who controls the directory it leads to.
    let meta = fs::metadata(dir).map_err(|err| SocketError::Io("inspect", dir.to_owned(), err))?;
    if meta.uid() != own_uid() || meta.mode() & 0o077 != 0 {
        return Err(SocketError::UnsafeDirectory {
            dir: dir.to_owned(),
            uid: meta.uid(),
            mode: meta.mode(),
        });
    }
    Ok(())
}

/// Removes a socket that nobody accepts on any more (its worker was killed); refuses a live
/// one and anything that is not a socket.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(SocketError::Io("inspect", path.to_owned(), err)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        // The live worker sees a client that hangs up before its handshake: harmless.
        Ok(_) => Err(SocketError::InUse(path.to_owned())),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing the stale socket {}", path.display());
            fs::remove_file(path).map_err(|err| SocketError::Io("remove", path.to_owned(), err))
        }
        Err(err) => Err(SocketError::Io("probe", path.to_owned(), err)),
    }
}
