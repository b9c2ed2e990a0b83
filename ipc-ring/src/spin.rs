//! Whether a waiting consumer should spin before it sleeps: learnt from its recent waits.
//!
//! Spinning pays only while the other side runs on another core and answers within the spin
//! window; then the round trip never enters the kernel. On a loaded 2-core machine the other
//! side is often not running, and every spin that ends in a sleep anyway has taken a core
//! from Django or from the entry for nothing. So, as adaptive mutexes do (glibc's
//! `PTHREAD_MUTEX_ADAPTIVE_NP`, Solaris' adaptive locks) and as Go's scheduler does before it
//! parks a thread, the consumer spins only while spinning has recently paid:
//!
//! - a wait that got its record within the window *paid*: caught while spinning, or, when it
//!   did not spin, woken within the window (the record then arrived even earlier, so spinning
//!   would have caught it). A wait that spun and still had to sleep, time out or see a closed
//!   peer *missed*. A wait that did not spin and woke later than the window tells nothing
//!   (the record may have come early and the wake-up late), and changes nothing;
//! - each wait that paid earns one credit (at most [`MAX_CREDIT`]), each spin that missed
//!   costs [`MISS_COST`]; the consumer spins while it holds at least `MISS_COST` credits;
//! - short of that it sleeps at once, except on every [`PROBE_INTERVAL`]-th wait, which spins
//!   to find out whether things changed (the other side may answer fast again while the
//!   wake-up latency of a loaded machine hides it).
//!
//! Why this is sound and bounded: the policy only chooses between the configured window and
//! no spin at all, so no wait spins longer than before ([`crate::wait::WaitConfig::spin`], at
//! most [`crate::wait::WaitConfig::MAX_SPIN`]), and correctness never depends on it: the
//! sleep handshake is the same either way (loom checks it with no spin at all). The spinning
//! that does not pay is bounded too: outside probes a spin needs `MISS_COST` credits, a spin
//! that misses spends them, and credits come only from waits that paid, so over any run of
//! waits the fruitless spins number at most `(paid waits + MAX_CREDIT) / MISS_COST`, plus one
//! probe per `PROBE_INTERVAL` waits. Spinning is kept up only while at least `MISS_COST` of
//! every `MISS_COST + 1` spins pay (75 %), about where the wake-up a paying spin saves (a
//! `FUTEX_WAKE` on the producer, a context switch and the scheduling latency on the consumer)
//! stops being worth a window of CPU.

/// Credit of a consumer that has not waited yet, and the most it can hold: a consumer whose
/// spins have been paying rides out two that miss before it stops spinning.
pub const MAX_CREDIT: u32 = 8;
/// Credits a spin that missed costs (one that paid earns one); also the credit a consumer
/// needs to spin.
pub const MISS_COST: u32 = 3;
/// Short of credit, one wait in this many spins anyway (a probe): at most 1/16 of a window of
/// CPU per wait while spinning does not pay.
pub const PROBE_INTERVAL: u32 = 16;

/// One consumer's spin policy (see the module docs). Plain state, owned by the consumer: a
/// ring has one consumer, so nothing here is shared.
///
/// ```
/// use molt_ipc_ring::spin::{AdaptiveSpin, WaitResult};
/// let mut policy = AdaptiveSpin::new();
/// assert!(policy.should_spin());
/// policy.record(WaitResult::Missed); // the reply came later than the window
/// assert!(policy.should_spin());
/// policy.record(WaitResult::Missed);
/// assert!(!policy.should_spin()); // two misses in a row: sleep at once
/// ```
#[derive(Clone, Debug)]
pub struct AdaptiveSpin {
    /// In `0..=MAX_CREDIT`; the consumer spins while it is at least `MISS_COST`.
    credit: u32,
    /// Waits without spinning since the last probe; in `0..PROBE_INTERVAL`.
    since_probe: u32,
    /// Whether the wait being recorded spun (set by `should_spin`).
    spun: bool,
}

/// What one wait showed about spinning, for [`AdaptiveSpin::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// The record came within the spin window (spinning caught it, or would have).
    Paid,
    /// It did not: the wait slept past the window, timed out or ended on a closed peer.
    Missed,
}

impl AdaptiveSpin {
    /// A policy that spins until its waits show that spinning does not pay.
    pub const fn new() -> Self {
        Self {
            credit: MAX_CREDIT,
            since_probe: 0,
            spun: false,
        }
    }

    /// Whether waits spin now (probes aside): spinning has been paying.
    ///
    /// ```
    /// use molt_ipc_ring::spin::{AdaptiveSpin, WaitResult};
    /// let mut policy = AdaptiveSpin::new();
    /// assert!(policy.is_spinning());
    /// ```
    pub fn is_spinning(&self) -> bool {
        self.credit >= MISS_COST
    }

    /// Whether the wait about to start should spin; counts the waits between probes, so call
    /// it once per wait that finds the ring empty.
    ///
    /// ```
    /// use molt_ipc_ring::spin::{AdaptiveSpin, WaitResult, PROBE_INTERVAL};
    /// let mut policy = AdaptiveSpin::new();
    /// while policy.should_spin() {
    ///     policy.record(WaitResult::Missed);
    /// }
    /// // Out of credit: one wait in PROBE_INTERVAL still spins.
    /// let spins = (0..PROBE_INTERVAL * 4).filter(|_| policy.should_spin()).count();
    /// assert_eq!(spins, 4);
    /// ```
    pub fn should_spin(&mut self) -> bool {
        self.spun = if self.is_spinning() {
            true
        } else {
            self.since_probe += 1;
            self.since_probe >= PROBE_INTERVAL
        };
        if self.spun {
            self.since_probe = 0;
        }
        self.spun
    }

    /// Learns from the wait that the last [`AdaptiveSpin::should_spin`] started.
    ///
    /// ```
    /// use molt_ipc_ring::spin::{AdaptiveSpin, WaitResult, MISS_COST};
    /// let mut policy = AdaptiveSpin::new();
    /// while policy.should_spin() {
    ///     policy.record(WaitResult::Missed);
    /// }
    /// // Waits that did not spin and woke within the window (or probes that paid) earn the
    /// // credit back.
    /// for _ in 0..MISS_COST {
    ///     policy.record(WaitResult::Paid);
    /// }
    /// assert!(policy.should_spin());
    /// ```
    pub fn record(&mut self, result: WaitResult) {
        match result {
            WaitResult::Paid => self.credit = (self.credit + 1).min(MAX_CREDIT),
            WaitResult::Missed if self.spun => self.credit = self.credit.saturating_sub(MISS_COST),
            // Slept without spinning and woke late: the record may have come early.
            WaitResult::Missed => {}
        }
    }
}

impl Default for AdaptiveSpin {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins made over `waits` waits whose results come from `result(i)`.
    fn spins_over(waits: u32, mut result: impl FnMut(u32) -> WaitResult) -> u32 {
        let mut policy = AdaptiveSpin::new();
        let mut spins = 0;
        for i in 0..waits {
            if policy.should_spin() {
                spins += 1;
            }
            policy.record(result(i));
        }
        spins
    }

    #[test]
    fn spinning_that_always_pays_never_stops() {
        assert_eq!(spins_over(1000, |_| WaitResult::Paid), 1000);
    }

    #[test]
    fn spinning_that_never_pays_costs_one_probe_in_sixteen() {
        let waits = 16_000;
        let spins = spins_over(waits, |_| WaitResult::Missed);
        // The first few waits spend the initial credit, then only probes spin.
        assert!(spins <= MAX_CREDIT.div_ceil(MISS_COST) + waits / PROBE_INTERVAL);
    }

    #[test]
    fn a_half_paying_pattern_spins_on_few_waits() {
        // Paid, missed, paid, missed...: below the 3-in-4 rate at which spinning keeps up.
        let waits = 16_000;
        let spins = spins_over(waits, |i| {
            if i % 2 == 0 {
                WaitResult::Paid
            } else {
                WaitResult::Missed
            }
        });
        assert!(spins < waits / 4, "{spins} spins over {waits} waits");
    }

    #[test]
    fn late_wake_ups_do_not_hide_a_peer_that_answers_fast_again() {
        let mut policy = AdaptiveSpin::new();
        while policy.should_spin() {
            policy.record(WaitResult::Missed);
        }
        // From now on the peer answers within the window, but every wake-up comes late: only
        // the probes see it, and MISS_COST of them bring spinning back.
        let resumed = (0..PROBE_INTERVAL * (MISS_COST + 1)).any(|_| {
            let spun = policy.should_spin();
            policy.record(if spun {
                WaitResult::Paid
            } else {
                WaitResult::Missed
            });
            policy.credit >= MISS_COST
        });
        assert!(resumed);
    }

    #[test]
    fn spinning_resumes_when_it_pays_again() {
        let mut policy = AdaptiveSpin::new();
        while policy.should_spin() {
            policy.record(WaitResult::Missed);
        }
        for _ in 0..MISS_COST {
            policy.record(WaitResult::Paid);
        }
        for _ in 0..100 {
            assert!(policy.should_spin());
            policy.record(WaitResult::Paid);
        }
    }
}
