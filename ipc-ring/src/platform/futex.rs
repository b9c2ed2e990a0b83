//! Futex wait and wake on a 32-bit word that two processes share.
//!
//! The operations are never `FUTEX_PRIVATE_FLAG`: a private futex is keyed by the calling
//! process's address space, so a waiter in one process would never see a wake from the other.
//! Waits use `FUTEX_WAIT_BITSET` with `FUTEX_BITSET_MATCH_ANY`, which behaves as `FUTEX_WAIT`
//! except that its timeout is an absolute `CLOCK_MONOTONIC` instant: a wait interrupted by a
//! signal resumes with the same deadline, without recomputing a relative timeout.

use std::io;
use std::sync::atomic::AtomicU32;

/// Why [`wait`] returned. Every outcome but `TimedOut` means "re-check the condition": the
/// kernel allows spurious wake-ups, and a waker may have fired before the wait began.
///
/// ```
/// use molt_ipc_ring::platform::futex::FutexWait;
/// assert_ne!(FutexWait::Woken, FutexWait::TimedOut);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWait {
    /// A `FUTEX_WAKE` reached this waiter (or a spurious wake-up happened).
    Woken,
    /// The word no longer held the expected value when the kernel checked it (`EAGAIN`).
    ValueChanged,
    /// A signal interrupted the wait (`EINTR`).
    Interrupted,
    /// The deadline passed (`ETIMEDOUT`).
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or until `deadline_ns` on `CLOCK_MONOTONIC`.
///
/// The kernel compares the word and queues the waiter atomically with respect to
/// [`wake_all`], which is what makes "announce, re-check, wait" free of lost wake-ups.
///
/// ```
/// use std::sync::atomic::AtomicU32;
/// use molt_ipc_ring::platform::{clock::monotonic_now_ns, futex};
/// let word = AtomicU32::new(0);
/// // The word is not 1, so the kernel returns at once.
/// assert_eq!(futex::wait(&word, 1, monotonic_now_ns() + 1_000_000).unwrap(), futex::FutexWait::ValueChanged);
/// ```
pub fn wait(word: &AtomicU32, expected: u32, deadline_ns: u64) -> io::Result<FutexWait> {
    let deadline = libc::timespec {
        // Clamped so a far-future deadline ("none") stays a valid timespec.
        tv_sec: (deadline_ns / 1_000_000_000).min(i64::MAX as u64 / 2) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `word` is a live, 4-byte-aligned AtomicU32 for the whole call (borrowed), which
    // is all FUTEX_WAIT_BITSET reads; `deadline` outlives the call; the remaining arguments
    // are plain integers. The kernel never writes through either pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            &deadline as *const libc::timespec,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if rc == 0 {
        return Ok(FutexWait::Woken);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(FutexWait::ValueChanged),
        Some(libc::EINTR) => Ok(FutexWait::Interrupted),
        Some(libc::ETIMEDOUT) => Ok(FutexWait::TimedOut),
        _ => Err(err),
    }
}

/// Wakes every waiter sleeping on `word`; returns how many were woken.
///
/// ```
/// use std::sync::atomic::AtomicU32;
/// use molt_ipc_ring::platform::futex;
/// let word = AtomicU32::new(0);
/// assert_eq!(futex::wake_all(&word).unwrap(), 0); // nobody was waiting
/// ```
pub fn wake_all(word: &AtomicU32) -> io::Result<usize> {
    // SAFETY: `word` is a live AtomicU32 for the whole call; FUTEX_WAKE only uses its
    // address as a key and never dereferences the unused pointer arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        // rc is a non-negative count of woken waiters.
        Ok(rc as usize)
    }
}
