//! `spin {ms}`: keeps one compute thread busy, checking its token on every turn. Lets tests
//! show Busy, timeouts and cancellation of CPU-bound work.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::TestDuration;
use crate::{Ctx, EntryError};

/// What `spin` answers.
#[derive(Debug, Serialize)]
pub struct Spun {
    /// The milliseconds spun.
    pub spun_ms: u64,
}

/// Busy-loops for `ms` milliseconds, or until the call is cancelled.
///
/// ```
/// use molt_worker::testing::{ctx, spin, TestDuration};
/// assert_eq!(spin(TestDuration { ms: 1 }, &ctx()).unwrap().spun_ms, 1);
/// ```
pub fn spin<S>(request: TestDuration, ctx: &Ctx<S>) -> Result<Spun, EntryError> {
    let ms = request.checked()?;
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        ctx.check()?;
        std::hint::spin_loop();
    }
    Ok(Spun { spun_ms: ms })
}
