//! `sleep {ms}`: sleeps without using a CPU, waking early when its token fires; and its async
//! twin, whose future is dropped instead. Let tests show timeouts and cancellation of a call
//! that is waiting.

use std::time::Duration;

use serde::Serialize;

use super::TestDuration;
use crate::{Ctx, EntryError};

/// What `sleep` and `sleep_async` answer.
#[derive(Debug, Serialize)]
pub struct Slept {
    /// The milliseconds slept.
    pub slept_ms: u64,
}

/// Sleeps `ms` milliseconds on a compute thread, or until the call is cancelled.
///
/// ```
/// use molt_worker::testing::{ctx, sleep, TestDuration};
/// assert_eq!(sleep(TestDuration { ms: 1 }, &ctx()).unwrap().slept_ms, 1);
/// ```
pub fn sleep<S>(request: TestDuration, ctx: &Ctx<S>) -> Result<Slept, EntryError> {
    let ms = request.checked()?;
    if ctx.cancel_token().wait_timeout(Duration::from_millis(ms)) {
        return Err(EntryError::Cancelled);
    }
    Ok(Slept { slept_ms: ms })
}

/// Sleeps `ms` milliseconds on the async runtime; cancelling the call drops the future.
pub async fn sleep_async<S>(request: TestDuration, _ctx: Ctx<S>) -> Result<Slept, EntryError> {
    let ms = request.checked()?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(Slept { slept_ms: ms })
}
