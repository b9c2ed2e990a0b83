//! The clock deadlines are written in: `CLOCK_MONOTONIC`, system-wide on Linux, so a client's
//! `time.monotonic_ns()` and the worker agree on "now". Read through `molt-ipc-ring`, the one
//! place that calls it.

use std::time::Duration;

pub use molt_ipc_ring::platform::clock::monotonic_now_ns;

/// Time left until `deadline_ns` (zero if it has passed).
pub fn until(deadline_ns: u64) -> Duration {
    Duration::from_nanos(deadline_ns.saturating_sub(monotonic_now_ns()))
}
