//! The cancellation token a running call checks in its loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Fired by a cancel frame, by the call's deadline, or by its client going away. Cheap to
/// clone; every clone sees the same state.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    /// Only sleepers ([`CancelToken::wait_timeout`]) take it, so `is_cancelled` stays one load.
    sleepers: Mutex<()>,
    wake: Condvar,
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token and wakes whoever sleeps on it. Idempotent.
    pub fn cancel(&self) {
        // Relaxed: the flag carries no data with it; whoever fires it sends the reply itself,
        // and sleepers are ordered by the mutex below.
        self.0.fired.store(true, Ordering::Relaxed);
        // Taking the lock before notifying closes the gap between a sleeper's check of the
        // flag and its wait: it either saw the flag or is already waiting.
        let _sleepers = self
            .0
            .sleepers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.0.wake.notify_all();
    }

    /// Whether the token has fired. Entries call this in their loops: it is one load.
    pub fn is_cancelled(&self) -> bool {
        // Relaxed: see `cancel`; an entry that reads a stale false stops on a later check.
        self.0.fired.load(Ordering::Relaxed)
    }

    /// Sleeps until the token fires or `timeout` passes; returns whether it fired.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut guard = self
            .0
            .sleepers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            if self.is_cancelled() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match self.0.wake.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_early_when_fired_from_another_thread() {
        let token = CancelToken::new();
        let firer = token.clone();
        let thread = std::thread::spawn(move || firer.cancel());
        assert!(token.wait_timeout(Duration::from_secs(30)));
        thread.join().unwrap();
    }

    #[test]
    fn wait_times_out_when_nobody_fires() {
        assert!(!CancelToken::new().wait_timeout(Duration::from_millis(1)));
    }
}
