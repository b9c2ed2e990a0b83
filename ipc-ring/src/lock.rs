//! A mutex and condition variable that ignore poisoning, for every crate of the workspace.
//!
//! molt holds its locks only around short, panic-free sections (a map insert, a ring write),
//! and a reply must never be lost because some unrelated thread panicked while holding one:
//! a poisoned lock is taken over as it stands, exactly like an unpoisoned one. Writing that
//! recovery at every call site is what this module replaces.
//!
//! ```
//! use molt_ipc_ring::lock::{Condvar, Mutex};
//! use std::sync::Arc;
//!
//! let ready = Arc::new((Mutex::new(false), Condvar::new()));
//! let setter = Arc::clone(&ready);
//! std::thread::spawn(move || {
//!     *setter.0.lock() = true;
//!     setter.1.notify_all();
//! });
//! let mut guard = ready.0.lock();
//! while !*guard {
//!     guard = ready.1.wait(guard);
//! }
//! ```

use std::sync::{PoisonError, TryLockError};
use std::time::Duration;

pub use std::sync::MutexGuard;

/// [`std::sync::Mutex`] whose [`lock`](Mutex::lock) never fails.
#[derive(Debug, Default)]
pub struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    ///
    /// ```
    /// let counter = molt_ipc_ring::lock::Mutex::new(0);
    /// *counter.lock() += 1;
    /// assert_eq!(counter.into_inner(), 1);
    /// ```
    pub const fn new(value: T) -> Self {
        Self(std::sync::Mutex::new(value))
    }

    /// The value, consuming the mutex.
    ///
    /// ```
    /// assert_eq!(molt_ipc_ring::lock::Mutex::new(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        self.0.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Blocks until the lock is ours; a lock poisoned by a panicking holder is taken as is.
    ///
    /// ```
    /// let names = molt_ipc_ring::lock::Mutex::new(vec!["echo"]);
    /// names.lock().push("health");
    /// assert_eq!(names.lock().len(), 2);
    /// ```
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock if it is free now, `None` if another thread holds it.
    ///
    /// ```
    /// let ring = molt_ipc_ring::lock::Mutex::new(());
    /// let held = ring.lock();
    /// assert!(ring.try_lock().is_none());
    /// drop(held);
    /// assert!(ring.try_lock().is_some());
    /// ```
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// [`std::sync::Condvar`] for guards of [`Mutex`], whose waits never fail.
#[derive(Debug, Default)]
pub struct Condvar(std::sync::Condvar);

impl Condvar {
    /// A condition variable nobody waits on.
    pub const fn new() -> Self {
        Self(std::sync::Condvar::new())
    }

    /// Releases `guard`, sleeps until notified (or spuriously woken) and locks again.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// As [`Condvar::wait`], for at most `timeout`.
    ///
    /// ```
    /// use molt_ipc_ring::lock::{Condvar, Mutex};
    /// let (lock, condvar) = (Mutex::new(()), Condvar::new());
    /// let _guard = condvar.wait_timeout(lock.lock(), std::time::Duration::from_millis(1));
    /// ```
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> MutexGuard<'a, T> {
        match self.0.wait_timeout(guard, timeout) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.0.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.0.notify_all();
    }
}
