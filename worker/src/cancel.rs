//! The cancellation token of a call: one token from the door to the bottom.
//!
//! A Cancel frame, the call's deadline, the client going away and the worker shutting down all
//! fire the same token. A sync entry looks at it in its loops ([`CancelToken::is_cancelled`],
//! one load); an async entry, or a library it calls (molt-db sends Postgres a cancel request),
//! awaits [`CancelToken::cancelled`]; a sync entry that must sleep uses
//! [`CancelToken::wait_timeout`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use molt_ipc_ring::lock::{Condvar, Mutex};
use tokio::sync::Notify;

/// Fired by a cancel frame, by the call's deadline, by its client going away or by shutdown.
/// Cheap to clone; every clone sees the same state.
///
/// ```
/// use molt_worker::CancelToken;
///
/// let token = CancelToken::new();
/// let seen_by_a_task = token.clone();
/// assert!(!seen_by_a_task.is_cancelled());
/// token.cancel();
/// assert!(seen_by_a_task.is_cancelled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    fired: AtomicBool,
    /// Only sync sleepers ([`CancelToken::wait_timeout`]) take it, so `is_cancelled` stays
    /// one load.
    sleepers: Mutex<()>,
    wake: Condvar,
    /// Async waiters ([`CancelToken::cancelled`]).
    waiters: Notify,
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token and wakes whoever waits on it. Idempotent.
    ///
    /// ```
    /// let token = molt_worker::CancelToken::new();
    /// token.cancel();
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        // Release: pairs with the Acquire in `is_cancelled`, so whoever sees the flag also
        // sees what the firing thread did before (the reply it chose is already sent).
        if self.0.fired.swap(true, Ordering::Release) {
            return;
        }
        self.0.waiters.notify_waiters();
        // Taking the lock before notifying closes the gap between a sleeper's check of the
        // flag and its wait: it either saw the flag or is already waiting.
        let _sleepers = self.0.sleepers.lock();
        self.0.wake.notify_all();
    }

    /// Whether the token has fired. Entries call this in their loops: it is one load.
    ///
    /// ```
    /// assert!(!molt_worker::CancelToken::new().is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        // Acquire: see `cancel`.
        self.0.fired.load(Ordering::Acquire)
    }

    /// Resolves once the token has fired (at once if it already has). Made to be raced
    /// against other work with `tokio::select!`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let token = molt_worker::CancelToken::new();
    /// let firer = token.clone();
    /// std::thread::spawn(move || firer.cancel());
    /// token.cancelled().await;
    /// assert!(token.is_cancelled());
    /// # });
    /// ```
    pub async fn cancelled(&self) {
        loop {
            // Created before the check: a `Notified` receives every `notify_waiters` issued
            // after its creation, polled or not, so a `cancel` between the check and the
            // await still wakes it.
            let notified = self.0.waiters.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps until the token fires or `timeout` passes; returns whether it fired. For sync
    /// entries; an async entry races [`CancelToken::cancelled`] against its timer instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(!molt_worker::CancelToken::new().wait_timeout(Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut guard = self.0.sleepers.lock();
        loop {
            if self.is_cancelled() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self.0.wake.wait_timeout(guard, left);
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

    #[test]
    fn cancelled_resolves_for_every_waiting_task() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let token = CancelToken::new();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let token = token.clone();
                runtime.spawn(async move { token.cancelled().await })
            })
            .collect();
        token.cancel();
        runtime.block_on(async {
            for waiter in waiters {
                waiter.await.unwrap();
            }
        });
    }

    #[test]
    fn cancelled_resolves_at_once_after_the_fact() {
        let token = CancelToken::new();
        token.cancel();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(token.cancelled());
    }
}
