//! `spin {ms}` (test-only): keeps one compute thread busy, checking its token on every turn.
//! Lets tests and demos show Busy, timeouts and cancellation of CPU-bound work.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{payload, test_duration_ms, CallContext, Entry, EntryError, EntryResult};

/// Busy-loops for `ms` milliseconds, or until cancelled.
pub struct Spin;

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
        let ms = test_duration_ms(self.name(), ctx)?;
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            if ctx.cancel.is_cancelled() {
                return Err(EntryError::Cancelled);
            }
            std::hint::spin_loop();
        }
        payload::encode(ctx.codec, &Output { spun_ms: ms })
    }
}
