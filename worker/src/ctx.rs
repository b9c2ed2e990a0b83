//! The context every entry gets: its call's cancellation, deadline and request id, and the
//! app's state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use molt_ipc_ring::frame::Codec;

use crate::cancel::CancelToken;
use crate::error::EntryError;

/// What an entry knows of its call, and the state its app built at start-up.
///
/// Sync entries get `&Ctx<S>`, async entries an owned `Ctx<S>` (cheap to clone: two
/// reference counts) that they may hand to the futures they await. `S` is the app's state
/// ([`App::with_state`](crate::App::with_state)); `()` for an app without one.
///
/// ```
/// use molt_worker::{Ctx, EntryError};
///
/// /// Sums 0..n, stopping as soon as the call is cancelled or times out.
/// fn sum(n: u64, ctx: &Ctx) -> Result<u64, EntryError> {
///     let mut total = 0u64;
///     for i in 0..n {
///         if i % 4096 == 0 {
///             ctx.check()?;
///         }
///         total = total.wrapping_add(i);
///     }
///     Ok(total)
/// }
///
/// let ctx = molt_worker::testing::ctx();
/// assert_eq!(sum(10, &ctx), Ok(45));
/// ```
pub struct Ctx<S = ()> {
    call: Arc<CallScope>,
    state: Arc<S>,
}

/// The part of a call an entry sees, shared by the dispatcher's record of the call.
#[derive(Debug)]
pub(crate) struct CallScope {
    pub request_id: u64,
    pub entry: &'static str,
    pub codec: Codec,
    pub deadline: Option<Instant>,
    pub cancel: CancelToken,
}

impl<S> Clone for Ctx<S> {
    fn clone(&self) -> Self {
        Self {
            call: Arc::clone(&self.call),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S> Ctx<S> {
    pub(crate) fn new(call: Arc<CallScope>, state: Arc<S>) -> Self {
        Self { call, state }
    }

    /// The state the app built at start-up.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The state, shared: for a task that outlives this borrow.
    pub fn state_arc(&self) -> Arc<S> {
        Arc::clone(&self.state)
    }

    /// The call's request id (unique among the calls in flight on its connection).
    pub fn request_id(&self) -> u64 {
        self.call.request_id
    }

    /// The entry's name.
    pub fn entry(&self) -> &'static str {
        self.call.entry
    }

    /// The codec of the call's payload, which is also its reply's.
    pub fn codec(&self) -> Codec {
        self.call.codec
    }

    /// When the call's time is up: the client's deadline, else the manifest's
    /// `default_timeout_ms` counted from arrival; `None` when it has neither.
    pub fn deadline(&self) -> Option<Instant> {
        self.call.deadline
    }

    /// Time left until the deadline (zero once it passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.call
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// The call's cancellation token, to hand to code that waits (a database query).
    pub fn cancel_token(&self) -> &CancelToken {
        &self.call.cancel
    }

    /// Whether the call was cancelled, timed out, lost its client or met shutdown. One load.
    pub fn is_cancelled(&self) -> bool {
        self.call.cancel.is_cancelled()
    }

    /// `Err(EntryError::Cancelled)` once the call is cancelled: `ctx.check()?` in a loop.
    pub fn check(&self) -> Result<(), EntryError> {
        if self.is_cancelled() {
            Err(EntryError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when the call is cancelled; race it with `tokio::select!`. An async entry
    /// need not: the runtime drops its future when the call is cancelled.
    pub async fn cancelled(&self) {
        self.call.cancel.cancelled().await;
    }
}
