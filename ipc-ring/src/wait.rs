//! Waiting for a record: spin for a bounded window, then sleep on the ring's futex word.
//!
//! A round trip that stays within the spin window never enters the kernel on either side:
//! the producer's [`commit`](crate::ring::Reservation::commit) sees nobody sleeping and skips
//! `FUTEX_WAKE`, the consumer sees the new tail while spinning. Past the window the consumer
//! pays one wake-up, and an idle consumer costs nothing but one short syscall per sleep slice.
//! Whether a wait spins at all is the consumer's own [`AdaptiveSpin`] policy: it stops
//! spinning when its recent spins did not pay and spins again when they would (see
//! [`crate::spin`]), so a consumer whose peer answers slowly sleeps at once instead of taking
//! a core for the window on every wait.
//!
//! # The handshake
//!
//! Consumer: swap `consumer_sleeping` to 1 (announce); re-check the ring (and `is_closed`);
//! if still empty, `FUTEX_WAIT(consumer_sleeping, 1, slice deadline)`; on any return, loop;
//! on leaving, swap it back to 0.
//! Producer (in `commit`): store `tail` (Release); swap `consumer_sleeping` to 0; if it was
//! 1, `FUTEX_WAKE`. Closing a segment does the same after storing the closed state.
//!
//! Every write to the word is an AcqRel swap, so the writes form one chain in which each
//! synchronizes with the previous one. If the producer's swap comes after the consumer's
//! announcement, it reads 1 and wakes; if it comes before, the announcement reads the chain
//! it ends, so the re-check sees the new tail. A wake that lands between the re-check and
//! `FUTEX_WAIT`, when nobody is queued to receive it, is not lost either: the producer's
//! swap left 0 in the word, the kernel compares it with 1 under the lock `FUTEX_WAKE` takes,
//! and the consumer returns at once and re-checks.
//!
//! A plain store + SeqCst fence + load on each side (Dekker) is the cheaper-looking
//! alternative, but it leaves the proof to subtle fence rules that loom could not confirm
//! (at 4 preemptions it reported a lost wake-up); the unconditional swap costs about what
//! the fence did (one locked instruction on x86) and the model checks it.
//! (`tests/loom.rs`; the model fails when the producer's swap is replaced by a load.)
//!
//! Sleeps are cut into slices (at most [`WaitConfig::sleep_slice_ns`]) so the caller's
//! `is_closed` check runs regularly: a peer that was killed cannot wake anybody, so its death
//! is noticed by polling (the control socket's EOF, the segment state word).

use std::io;
use std::time::Duration;

use crate::platform::clock::monotonic_now_ns;
use crate::ring::{Consumer, Corrupt};
use crate::spin::{AdaptiveSpin, WaitResult};
use crate::sync::Ordering;

/// How long to spin and how finely to slice sleeps.
///
/// ```
/// use std::time::Duration;
/// use molt_ipc_ring::wait::WaitConfig;
/// let config = WaitConfig { spin: Duration::from_micros(20), ..WaitConfig::default() };
/// assert_eq!(config.sleep_slice_ns, WaitConfig::default().sleep_slice_ns);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitConfig {
    /// How long to poll the ring before sleeping, at most [`WaitConfig::MAX_SPIN`], when the
    /// consumer's [`AdaptiveSpin`] policy says spinning pays (else it sleeps at once). Zero
    /// never spins. On a 2-core machine a spinning waiter takes a whole core from
    /// everything else, so keep it short: it should cover a typical reply time, not a slow one.
    pub spin: Duration,
    /// Longest single futex sleep, in nanoseconds: bounds how late a dead peer or a closed
    /// segment is noticed, at the cost of one syscall per slice while idle.
    pub sleep_slice_ns: u64,
}

impl WaitConfig {
    /// Default spin window, 20 µs. Measured (`benches/ring.rs`, `bench/ipc/README.md`) on
    /// this 2-core machine under load: a Rust round trip completes in 1-3 µs and a Python one
    /// through cffi in ~7 µs while both sides spin, so 20 µs covers a hot call with margin;
    /// longer windows only burn CPU on calls that will need a wake-up anyway.
    ///
    /// ```
    /// use molt_ipc_ring::wait::WaitConfig;
    /// assert_eq!(WaitConfig::default().spin, WaitConfig::DEFAULT_SPIN);
    /// ```
    pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);
    /// Longest spin window a wait honours, 10 ms: a longer `spin` is cut to it, so no setting
    /// (a worker's `--spin-us`, a client's `spin_ns`) turns a wait into a busy loop that holds
    /// a core until its deadline.
    ///
    /// ```
    /// use molt_ipc_ring::wait::WaitConfig;
    /// assert!(WaitConfig::DEFAULT_SPIN < WaitConfig::MAX_SPIN);
    /// ```
    pub const MAX_SPIN: Duration = Duration::from_millis(10);
    /// Default sleep slice: 5 ms, so a dead peer is noticed within a few milliseconds.
    ///
    /// ```
    /// use molt_ipc_ring::wait::WaitConfig;
    /// assert_eq!(WaitConfig::DEFAULT_SLEEP_SLICE_NS, 5_000_000);
    /// ```
    pub const DEFAULT_SLEEP_SLICE_NS: u64 = 5_000_000;
}

impl Default for WaitConfig {
    fn default() -> Self {
        Self {
            spin: Self::DEFAULT_SPIN,
            sleep_slice_ns: Self::DEFAULT_SLEEP_SLICE_NS,
        }
    }
}

/// How a wait ended.
///
/// ```
/// use molt_ipc_ring::wait::WaitOutcome;
/// assert_ne!(WaitOutcome::Ready, WaitOutcome::TimedOut);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// A record is waiting: [`Consumer::pop`] will not return `Empty`.
    Ready,
    /// The deadline passed with the ring still empty.
    TimedOut,
    /// `is_closed` said the peer is gone (checked only while the ring is empty).
    Closed,
}

/// Why a wait failed.
///
/// ```
/// use molt_ipc_ring::{ring::Corrupt, wait::WaitError};
/// let e = WaitError::from(Corrupt("tail"));
/// assert_eq!(e.to_string(), "corrupt ring: tail");
/// ```
#[derive(Debug)]
pub enum WaitError {
    /// The producer's index is impossible.
    Corrupt(Corrupt),
    /// The futex syscall failed in a way a valid shared word never causes.
    Futex(io::Error),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt(c) => c.fmt(f),
            Self::Futex(e) => write!(f, "futex wait failed: {e}"),
        }
    }
}

impl std::error::Error for WaitError {}

impl From<Corrupt> for WaitError {
    fn from(c: Corrupt) -> Self {
        Self::Corrupt(c)
    }
}

/// Polls of the ring between two clock readings and `yield_now`s: well under a microsecond.
///
/// Yielding every round is what makes spinning pay on a loaded 2-core machine: a spinner
/// that never yields looks like a CPU hog to the scheduler, loses its wake-up priority and
/// gets preempted for whole time slices (round trips of 60-130 µs measured with compilers
/// running, against ~1-3 µs when yielding; `benches/ring.rs`). `sched_yield` costs well
/// under a microsecond when nothing else wants the core.
const SPINS_PER_ROUND: u32 = 64;

impl Consumer {
    /// Waits until a record is available, `deadline_ns` (absolute, `CLOCK_MONOTONIC`; use
    /// `u64::MAX` for none) passes, or `is_closed()` returns true.
    ///
    /// Spins for `config.spin` (at most [`WaitConfig::MAX_SPIN`]) if the consumer's spin
    /// policy says spinning has been paying, then sleeps on the futex in slices, calling
    /// `is_closed` before each slice; then tells the policy whether the record came within
    /// the window. Returns `Ready` at once if a record is already there, even past the
    /// deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use molt_ipc_ring::{platform::clock::monotonic_now_ns, ring, wait::{WaitConfig, WaitOutcome}};
    /// let (mut producer, mut consumer) = ring::with_capacity(256).unwrap();
    /// let config = WaitConfig { spin: Duration::from_micros(5), ..WaitConfig::default() };
    /// let soon = monotonic_now_ns() + 1_000_000;
    /// assert_eq!(consumer.wait(soon, &config, || false).unwrap(), WaitOutcome::TimedOut);
    /// producer.push(b"x").unwrap();
    /// assert_eq!(consumer.wait(soon, &config, || false).unwrap(), WaitOutcome::Ready);
    /// ```
    pub fn wait(
        &mut self,
        deadline_ns: u64,
        config: &WaitConfig,
        mut is_closed: impl FnMut() -> bool,
    ) -> Result<WaitOutcome, WaitError> {
        if self.has_data()? {
            return Ok(WaitOutcome::Ready);
        }
        let window = config.spin.min(WaitConfig::MAX_SPIN);
        if window.is_zero() {
            return self.sleep_then_settle(deadline_ns, config.sleep_slice_ns, &mut is_closed);
        }
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let started = monotonic_now_ns();
        if self.spin_policy.should_spin()
            && self.spin(started.saturating_add(window_ns).min(deadline_ns))?
        {
            self.spin_policy.record(WaitResult::Paid);
            return Ok(WaitOutcome::Ready);
        }
        let outcome = self.sleep_then_settle(deadline_ns, config.sleep_slice_ns, &mut is_closed);
        let in_window = monotonic_now_ns().saturating_sub(started) <= window_ns;
        self.spin_policy.record(match outcome {
            Ok(WaitOutcome::Ready) if in_window => WaitResult::Paid,
            _ => WaitResult::Missed,
        });
        outcome
    }

    /// The policy deciding whether this consumer spins (see [`crate::spin`]).
    ///
    /// ```
    /// let (_, consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// assert!(consumer.spin_policy().is_spinning()); // a new consumer spins
    /// ```
    pub fn spin_policy(&self) -> &AdaptiveSpin {
        &self.spin_policy
    }

    /// Sleeps until data, the deadline or `is_closed`, then withdraws the announcement.
    fn sleep_then_settle(
        &mut self,
        deadline_ns: u64,
        slice_ns: u64,
        is_closed: &mut impl FnMut() -> bool,
    ) -> Result<WaitOutcome, WaitError> {
        let outcome = self.sleep(deadline_ns, slice_ns, is_closed);
        // AcqRel swap, like every write to the word (see the module docs): tells producers
        // not to bother waking us.
        self.sleeping_word().swap(0, Ordering::AcqRel);
        outcome
    }

    /// Polls until data or `until_ns` (the spin window's end, or the deadline if sooner);
    /// true if data arrived.
    fn spin(&mut self, until_ns: u64) -> Result<bool, Corrupt> {
        let until = until_ns;
        loop {
            for _ in 0..SPINS_PER_ROUND {
                if self.has_data()? {
                    return Ok(true);
                }
                std::hint::spin_loop();
            }
            if monotonic_now_ns() >= until {
                return Ok(false);
            }
            std::thread::yield_now();
        }
    }

    /// The announce / re-check / FUTEX_WAIT loop of the handshake.
    fn sleep(
        &mut self,
        deadline_ns: u64,
        slice_ns: u64,
        is_closed: &mut impl FnMut() -> bool,
    ) -> Result<WaitOutcome, WaitError> {
        loop {
            // AcqRel swap: announces the sleep; reading the producers' chain of swaps makes
            // the re-check below see whatever they published before their last swap.
            self.sleeping_word().swap(1, Ordering::AcqRel);
            if self.has_data()? {
                return Ok(WaitOutcome::Ready);
            }
            if is_closed() {
                return Ok(WaitOutcome::Closed);
            }
            let now = monotonic_now_ns();
            if now >= deadline_ns {
                return Ok(WaitOutcome::TimedOut);
            }
            let slice_end = now.saturating_add(slice_ns.max(1)).min(deadline_ns);
            // Every return (woken, value changed, EINTR, slice timeout, spurious) loops back
            // to the re-check above; the deadline check bounds the loop.
            self.sleeping_word()
                .wait(1, slice_end)
                .map_err(WaitError::Futex)?;
        }
    }
}
