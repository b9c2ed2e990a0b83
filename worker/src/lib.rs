//! `molt-worker`: the runtime of a molt worker, the native process a Django application
//! offloads its hot endpoints to. Write entries as plain functions over your own serde
//! types, register each in one line, and [`App::run`] is your binary's `main`: molt's
//! command line, exports manifest, shared-memory and stdio transports, deadlines,
//! cancellation, `Busy` backpressure and metrics come with it.
//!
//! - [`App`] registers entries ([`App::entry`] on the bounded compute pool,
//!   [`App::async_entry`] on tokio, [`App::inline_entry`] on the transport's thread), builds
//!   shared state once ([`App::with_state`]) and embeds a default manifest.
//! - [`Ctx`] is what an entry knows of its call: cancellation (a flag and a future), deadline,
//!   request id, and the app's state.
//! - A request is any serde type or a [`Payload`] ([`FromPayload`]); a result any serde type
//!   or a [`Reply`] ([`IntoReply`]); an [`EntryError`] is the reply's status and message.
//! - [`embed`] serves the same entries from a front end of your own (molt-web's HTTP).
//! - [`json`]: a typed result in the Json codec is written as Python's `json.dumps` (and so
//!   Django's `JsonResponse`) writes it, so a view can pass the bytes through unchanged.
//! - [`testing`] has entries that exercise the runtime and an in-process [`TestClient`](testing::TestClient).
//!
//! Exactly one reply goes out per call, whatever races: the entry's result, Timeout at the
//! deadline, Cancelled on a Cancel frame or when the client goes away, Busy when a limit is
//! reached. docs/guide.md walks from a Django view to an entry of your own.
//!
//! ```
//! use molt_worker::{App, Ctx, EntryError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct ListItems { user_id: u64, limit: usize }
//!
//! #[derive(Serialize)]
//! struct Page { ids: Vec<u64> }
//!
//! fn list_items(req: ListItems, ctx: &Ctx) -> Result<Page, EntryError> {
//!     let mut ids = Vec::with_capacity(req.limit);
//!     for i in 0..req.limit as u64 {
//!         ctx.check()?; // stop as soon as the call is cancelled or times out
//!         ids.push(req.user_id * 1_000 + i);
//!     }
//!     Ok(Page { ids })
//! }
//!
//! let app = App::new().entry("list_items", list_items);
//! // In `main`: `app.run()`. Here, in-process:
//! let page: serde_json::Value = app
//!     .test_client()
//!     .unwrap()
//!     .call_json("list_items", &serde_json::json!({"user_id": 7, "limit": 2}))
//!     .unwrap();
//! assert_eq!(page["ids"], serde_json::json!([7000, 7001]));
//! ```
#![deny(missing_docs)]

mod app;
mod cancel;
mod clock;
mod config;
mod ctx;
mod dispatcher;
pub mod embed;
mod entry;
mod error;
pub mod json;
mod logging;
mod manifest;
pub mod metrics;
mod observe;
mod payload;
mod serve;
pub mod testing;
mod transport;

pub use app::{App, BoxError, Startup};
pub use cancel::CancelToken;
pub use ctx::Ctx;
pub use error::EntryError;
pub use molt_ipc_ring::frame::{Codec, Status};
pub use payload::{FromPayload, IntoReply, Payload, Reply};
