//! `molt-ipc-ring`: the wire format and the shared-memory plumbing that molt's Django client
//! and `molt_worker` share.
//!
//! - [`frame`]: protocol v1, the 48-byte header every transport carries.
//! - [`ring`]: a single-producer single-consumer ring of variable-length records. Lock-free
//!   and wait-free: push and pop return at once; a full ring returns an error and overwrites
//!   nothing; a corrupt index or length from the peer returns an error, never a panic or an
//!   out-of-bounds access.
//! - [`wait`]: bounded spinning, then futex sleep, for a consumer waiting on a ring.
//! - [`spin`]: whether that consumer spins at all, learnt from whether its recent spins paid.
//! - [`segment`]: a sealed memfd holding a header and two rings (requests, responses).
//! - [`handshake`]: how the worker hands a segment to a client over a unix socket.
//! - [`lock`]: the poison-free mutex and condition variable every molt crate uses.
//! - [`platform`]: the Linux system calls underneath (memfd, futex, `SCM_RIGHTS`, peer
//!   credentials, monotonic clock), and most of the crate's `unsafe`.
//!
//! The crate knows nothing of async runtimes or of what an entry computes: it moves frames.
//!
//! ```
//! use molt_ipc_ring::frame::{Codec, Frame};
//! use molt_ipc_ring::segment::{ClientSide, SegmentConfig, WorkerSide};
//!
//! let (mut worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
//! let mut client = ClientSide::attach(file).unwrap(); // normally after SCM_RIGHTS
//! client.requests.push(&Frame::call(1, "echo", Codec::Raw, b"hi").encode_to_vec()).unwrap();
//! let mut request = Vec::new();
//! worker.requests.pop().unwrap().append_to(&mut request);
//! assert_eq!(molt_ipc_ring::frame::decode(&request, 1 << 20).unwrap().entry, "echo");
//! ```
#![deny(missing_docs)]

pub mod frame;
#[cfg(not(loom))]
pub mod handshake;
pub mod lock;
pub mod platform;
pub mod ring;
#[cfg(not(loom))]
pub mod segment;
pub mod spin;
mod sync;
pub mod wait;
