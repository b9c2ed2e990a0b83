//! Testing a worker: entries that exercise the runtime (register them only in a binary built
//! for tests), contexts to call an entry function directly, and an in-process client that
//! calls an app's entries through the same decoding and encoding the worker uses.
//!
//! ```
//! use molt_worker::{App, Ctx, EntryError};
//!
//! fn double(n: i64, _ctx: &Ctx) -> Result<i64, EntryError> {
//!     n.checked_mul(2).ok_or_else(|| EntryError::InvalidInput("n is too large".into()))
//! }
//!
//! // The function itself, with a context of its own:
//! assert_eq!(double(21, &molt_worker::testing::ctx()), Ok(42));
//! // Or through the app, as a client's payload reaches it:
//! let client = App::new().entry("double", double).test_client().unwrap();
//! assert_eq!(client.call_json::<_, i64>("double", &21), Ok(42));
//! assert!(matches!(client.call_json::<_, i64>("double", &"x"), Err(EntryError::InvalidInput(_))));
//! ```

mod client;
mod panic;
mod sleep;
mod spin;

use std::sync::Arc;
use std::time::Instant;

use molt_ipc_ring::frame::Codec;
use serde::Deserialize;

pub use self::client::TestClient;
pub use self::panic::panic;
pub use self::sleep::{sleep, sleep_async, Slept};
pub use self::spin::{spin, Spun};
use crate::cancel::CancelToken;
use crate::ctx::{CallScope, Ctx};
use crate::{App, EntryError};

/// Longest `ms` the test entries accept, so a typo cannot tie up a thread for hours.
pub const MAX_TEST_MS: u64 = 60_000;

/// The request of the test entries: `{"ms": N}`.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct TestDuration {
    /// Milliseconds to sleep or spin.
    pub ms: u64,
}

impl TestDuration {
    /// `ms`, refused beyond [`MAX_TEST_MS`].
    fn checked(self) -> Result<u64, EntryError> {
        if self.ms > MAX_TEST_MS {
            return Err(EntryError::InvalidInput(format!(
                "ms must be at most {MAX_TEST_MS}"
            )));
        }
        Ok(self.ms)
    }
}

/// Adds the test entries to `app`: `sleep` and `spin` (sync, on the compute pool),
/// `sleep_async` (async) and `panic`. For binaries built for tests only: a production
/// worker should not be able to run them.
///
/// ```
/// let client = molt_worker::testing::with_test_entries(molt_worker::App::new())
///     .test_client()
///     .unwrap();
/// let slept: serde_json::Value = client.call_json("sleep", &serde_json::json!({"ms": 1})).unwrap();
/// assert_eq!(slept["slept_ms"], 1);
/// ```
pub fn with_test_entries<S: Send + Sync + 'static>(app: App<S>) -> App<S> {
    app.entry("sleep", sleep)
        .entry("spin", spin)
        .async_entry("sleep_async", sleep_async)
        .entry("panic", panic)
}

/// A context for calling a stateless entry function directly: request id 0, codec MsgPack,
/// no deadline, never cancelled unless you fire [`Ctx::cancel_token`].
///
/// ```
/// let ctx = molt_worker::testing::ctx();
/// assert!(ctx.check().is_ok());
/// ctx.cancel_token().cancel();
/// assert!(ctx.check().is_err());
/// ```
pub fn ctx() -> Ctx<()> {
    ctx_with_state(())
}

/// As [`ctx`], for an entry of an app with state.
///
/// ```
/// let ctx = molt_worker::testing::ctx_with_state(vec![1, 2, 3]);
/// assert_eq!(ctx.state().len(), 3);
/// ```
pub fn ctx_with_state<S>(state: S) -> Ctx<S> {
    CtxBuilder::new(state).build()
}

/// A context with the parts a test chooses: entry name, codec, deadline, token.
///
/// ```
/// use std::time::{Duration, Instant};
/// use molt_worker::{CancelToken, testing::CtxBuilder};
///
/// let token = CancelToken::new();
/// let ctx = CtxBuilder::new(())
///     .entry("writer")
///     .deadline(Instant::now() + Duration::from_millis(50))
///     .cancel_token(token.clone())
///     .build();
/// assert_eq!(ctx.entry(), "writer");
/// assert!(ctx.remaining().unwrap() <= Duration::from_millis(50));
/// token.cancel();
/// assert!(ctx.is_cancelled());
/// ```
pub struct CtxBuilder<S> {
    state: S,
    entry: &'static str,
    codec: Codec,
    deadline: Option<Instant>,
    cancel: CancelToken,
}

impl<S> CtxBuilder<S> {
    /// Entry `test`, codec MsgPack, no deadline, a fresh token.
    pub fn new(state: S) -> Self {
        Self {
            state,
            entry: "test",
            codec: Codec::MsgPack,
            deadline: None,
            cancel: CancelToken::new(),
        }
    }

    /// The entry the call is to.
    pub fn entry(mut self, entry: &'static str) -> Self {
        self.entry = entry;
        self
    }

    /// The call's codec.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The call's deadline.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The call's token (keep a clone to fire it).
    pub fn cancel_token(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The context.
    pub fn build(self) -> Ctx<S> {
        let scope = Arc::new(CallScope {
            request_id: 0,
            entry: self.entry,
            codec: self.codec,
            deadline: self.deadline,
            cancel: self.cancel,
        });
        Ctx::new(scope, Arc::new(self.state))
    }
}

/// The scope of a call made outside any transport.
fn detached_scope(entry: &'static str, codec: Codec, cancel: CancelToken) -> Arc<CallScope> {
    Arc::new(CallScope {
        request_id: 0,
        entry,
        codec,
        deadline: None,
        cancel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_entries_refuse_more_than_the_test_bound_before_starting() {
        let client = with_test_entries(App::new()).test_client().unwrap();
        let too_long = serde_json::json!({ "ms": MAX_TEST_MS + 1 });
        for entry in ["sleep", "spin", "sleep_async"] {
            assert_eq!(
                client.call_json::<_, serde_json::Value>(entry, &too_long),
                Err(EntryError::InvalidInput(format!(
                    "ms must be at most {MAX_TEST_MS}"
                ))),
                "{entry}"
            );
        }
    }

    #[test]
    fn a_panicking_async_entry_is_an_internal_error() {
        async fn explode(_: (), _ctx: Ctx) -> Result<(), EntryError> {
            panic!("boom")
        }
        let client = App::new()
            .async_entry("explode", explode)
            .test_client()
            .unwrap();
        assert_eq!(
            client.call_json::<_, ()>("explode", &()),
            Err(EntryError::Internal("internal error".into()))
        );
    }

    #[test]
    fn a_panic_is_an_internal_error() {
        let client = with_test_entries(App::new()).test_client().unwrap();
        assert_eq!(
            client.call_json::<_, serde_json::Value>("panic", &()),
            Err(EntryError::Internal("internal error".into()))
        );
    }
}
