//! Linux system calls, every one the crate makes: memfd segments with seals,
//! futex wait/wake on shared words, connecting within a deadline and file-descriptor passing
//! over unix sockets, peer credentials, and the monotonic clock.
//!
//! Everything above this module (rings, segments, the wait handshake) talks to no kernel, so
//! it can run under loom and Miri; its remaining `unsafe` is raw access to the shared mapping
//! (`sync`, `segment`, `ring`), each block with its own SAFETY argument.
//!
//! Why `nix` and `libc` both: `nix` wraps memfd, seals, `sendmsg`/`recvmsg` with
//! `SCM_RIGHTS`, `SO_PEERCRED` and `poll` safely, which removes hand-written control-message
//! arithmetic; it has no futex wrapper, so [`futex`] calls `libc::syscall` directly.

pub mod clock;
pub mod connect;
pub mod fd_passing;
pub mod futex;
pub mod memfd;
pub mod peer;
