//! `CLOCK_MONOTONIC`, the clock every deadline in molt is written in.
//!
//! Linux's monotonic clock is system-wide, so a deadline computed by one process means the same
//! instant in another; Python's `time.monotonic_ns()` reads the same clock.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds on `CLOCK_MONOTONIC` now.
///
/// ```
/// use molt_ipc_ring::platform::clock::monotonic_now_ns;
/// let earlier = monotonic_now_ns();
/// assert!(monotonic_now_ns() >= earlier);
/// ```
pub fn monotonic_now_ns() -> u64 {
    // CLOCK_MONOTONIC exists on every Linux kernel and the vDSO call cannot fail with a valid
    // clock id and a valid out-pointer, which nix provides.
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    // Monotonic seconds count from boot: far below u64 nanoseconds (584 years).
    (now.tv_sec() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec() as u64)
}
