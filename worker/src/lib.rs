//! The parts of `molt_worker` that other crates exercise directly: the entries, the exports
//! manifest and the cancellation token entries check. The fuzz targets (`fuzz/`) feed
//! untrusted payloads and manifests through exactly the code the binary runs; the binary
//! (`src/main.rs`) adds the transports and the dispatcher around them.
//!
//! ```
//! use molt_ipc_ring::frame::Codec;
//! use molt_worker::cancel::CancelToken;
//! use molt_worker::entries::{registry, CallContext};
//!
//! let echo = registry().into_iter().find(|entry| entry.name() == "echo").unwrap();
//! let cancel = CancelToken::new();
//! let ctx = CallContext { codec: Codec::Raw, payload: b"hi", cancel: &cancel };
//! assert_eq!(echo.call(&ctx).unwrap(), b"hi");
//! ```
#![deny(missing_docs)]

pub mod cancel;
pub mod entries;
pub mod manifest;
