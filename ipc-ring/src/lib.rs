//! `molt-ipc-ring`: the wire format and the shared-memory plumbing that molt's Django client
//! and `molt_worker` share.
//!
//! - [`frame`]: protocol v1, the 48-byte header every transport carries.
//!
//! The crate knows nothing of async runtimes or of what an entry computes: it moves frames.
#![deny(missing_docs)]

pub mod frame;
