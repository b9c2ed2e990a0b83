//! `sleep {ms}` (test-only): sleeps without using a CPU, waking early when its token fires.
//! Lets tests and demos show timeouts and cancellation of a call that is waiting.

use std::time::Duration;

use serde::Serialize;

use super::{payload, test_duration_ms, CallContext, Entry, EntryError, EntryResult};

/// Sleeps `ms` milliseconds, or until cancelled.
pub struct Sleep;

#[derive(Serialize)]
struct Output {
    slept_ms: u64,
}

impl Entry for Sleep {
    fn name(&self) -> &'static str {
        "sleep"
    }

    fn test_only(&self) -> bool {
        true
    }

    fn call(&self, ctx: &CallContext<'_>) -> EntryResult {
        let ms = test_duration_ms(self.name(), ctx)?;
        if ctx.cancel.wait_timeout(Duration::from_millis(ms)) {
            return Err(EntryError::Cancelled);
        }
        payload::encode(ctx.codec, &Output { slept_ms: ms })
    }
}
