//! The clock deadlines are written in: `CLOCK_MONOTONIC`, system-wide on Linux, so a client's
//! `time.monotonic_ns()` and the worker agree on "now".

use std::time::Duration;

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC is always available on
    // Linux, so the call cannot fail and only writes into `now`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    // A monotonic clock is never negative; u64 nanoseconds last 584 years past boot.
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// Time left until `deadline_ns` (zero if it has passed).
pub fn until(deadline_ns: u64) -> Duration {
    Duration::from_nanos(deadline_ns.saturating_sub(monotonic_now_ns()))
}
