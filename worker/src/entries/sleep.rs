//! `sleep {ms}` (test-only): sleeps without using a CPU, waking early when its token fires.
//! Lets tests and demos show timeouts and cancellation of a call that is waiting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{payload, CallContext, Entry, EntryError, EntryResult, MAX_TEST_MS};

/// Sleeps `ms` milliseconds, or until cancelled.
pub struct Sleep;

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

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
        let input: Input = payload::decode(self.name(), ctx.codec, ctx.payload)?;
        if input.ms > MAX_TEST_MS {
            return Err(EntryError::InvalidInput(format!(
                "ms must be at most {MAX_TEST_MS}"
            )));
        }
        if ctx.cancel.wait_timeout(Duration::from_millis(input.ms)) {
            return Err(EntryError::Cancelled);
        }
        payload::encode(ctx.codec, &Output { slept_ms: input.ms })
    }
}
