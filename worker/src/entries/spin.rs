//! `spin {ms}` (test-only): keeps one compute thread busy, checking its token on every turn.
//! Lets tests and demos show Busy, timeouts and cancellation of CPU-bound work.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{payload, CallContext, Entry, EntryError, EntryResult, MAX_TEST_MS};

/// Busy-loops for `ms` milliseconds, or until cancelled.
pub struct Spin;

#[derive(Deserialize)]
struct Input {
    ms: u64,
}

#[derive(Serialize)]
struct Output {
    spun_ms: u64,
}

impl Entry for Spin {
    fn name(&self) -> &'static str {
        "spin"
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
        let until = Instant::now() + Duration::from_millis(input.ms);
        while Instant::now() < until {
            if ctx.cancel.is_cancelled() {
                return Err(EntryError::Cancelled);
            }
            std::hint::spin_loop();
        }
        payload::encode(ctx.codec, &Output { spun_ms: input.ms })
    }
}
