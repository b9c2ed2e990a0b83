//! The atomics, futex and shared byte area the ring is built on, swapped for loom's models
//! under `cfg(loom)` so the very same ring and handshake code is model-checked.
//!
//! - [`FutexWord`]: a shared `u32` that a thread can sleep on. Normally an `AtomicU32` with
//!   the kernel's futex; under loom a word plus a mutex and condition variable, which give the
//!   two properties the handshake relies on: "compare and sleep" is atomic with respect to a
//!   wake, and a wake reaches every sleeper.
//! - [`SharedBytes`]: the ring's data area. Normally a raw pointer into a mapping or a heap
//!   block; under loom a slice of `loom::cell::UnsafeCell<u8>`, so loom reports any read that
//!   the index protocol does not order after the write it reads (a torn or stale frame).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
mod imp {
    use super::{AtomicU32, Ordering};
    use crate::platform::futex;
    use std::io;
    use std::ptr::NonNull;

    /// A `u32` in shared memory that a thread can sleep on; same layout as `u32`.
    #[repr(transparent)]
    pub(crate) struct FutexWord(AtomicU32);

    impl FutexWord {
        pub(crate) fn new(value: u32) -> Self {
            Self(AtomicU32::new(value))
        }

        pub(crate) fn swap(&self, value: u32, order: Ordering) -> u32 {
            self.0.swap(value, order)
        }

        /// Sleeps while the word holds `expected`, until woken or `deadline_ns`; any return
        /// means "re-check".
        pub(crate) fn wait(&self, expected: u32, deadline_ns: u64) -> io::Result<()> {
            futex::wait(&self.0, expected, deadline_ns).map(drop)
        }

        pub(crate) fn wake_all(&self) -> io::Result<()> {
            futex::wake_all(&self.0).map(drop)
        }
    }

    /// The ring's data area: `len` bytes that another thread or process may write.
    ///
    /// Reads copy out; nothing ever hands out a reference into the area, because the peer
    /// may rewrite it at any time.
    pub(crate) struct SharedBytes {
        /// Valid for reads and writes of `len` bytes for as long as the owner that created this
        /// value keeps the memory alive (the ring's endpoints hold that owner).
        ptr: NonNull<u8>,
        len: usize,
    }

    // SAFETY: SharedBytes is a pointer to memory that is designed to be accessed from several
    // threads and processes; every access goes through the copy functions below, whose
    // callers order them with the ring's atomics.
    unsafe impl Send for SharedBytes {}
    // SAFETY: as above; `&SharedBytes` only offers the same copying accessors.
    unsafe impl Sync for SharedBytes {}

    impl SharedBytes {
        /// # Safety
        /// `ptr` must be valid for reads and writes of `len` bytes for the life of this value.
        pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
            Self { ptr, len }
        }

        /// Copies `src` to `offset`.
        ///
        /// # Safety
        /// `offset + src.len() <= len`, and the ring protocol must give this side exclusive
        /// use of those bytes.
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            debug_assert!(offset + src.len() <= self.len);
            // SAFETY: in bounds by the caller's contract; `src` is caller memory, never inside
            // the shared area, so the ranges cannot overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src.as_ptr(),
                    self.ptr.as_ptr().add(offset),
                    src.len(),
                )
            }
        }

        /// Copies `dst.len()` bytes from `offset` into `dst`.
        ///
        /// # Safety
        /// `offset + dst.len() <= len`, and the ring protocol must have published those bytes
        /// to this side.
        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            debug_assert!(offset + dst.len() <= self.len);
            // SAFETY: in bounds by the caller's contract; `dst` is private caller memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.ptr.as_ptr().add(offset),
                    dst.as_mut_ptr(),
                    dst.len(),
                )
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    use super::{AtomicU32, Ordering};
    use loom::cell::UnsafeCell;
    use loom::sync::{Condvar, Mutex};
    use std::io;

    /// Loom's model of a futex word: "compare and sleep" and "wake" both hold `queue`, which
    /// is what the kernel's hash-bucket lock guarantees for a real futex. Deadlines are not
    /// modelled: a model wait sleeps until woken, so a lost wake-up shows as a deadlock.
    pub(crate) struct FutexWord {
        word: AtomicU32,
        queue: Mutex<()>,
        sleepers: Condvar,
    }

    impl FutexWord {
        pub(crate) fn new(value: u32) -> Self {
            Self {
                word: AtomicU32::new(value),
                queue: Mutex::new(()),
                sleepers: Condvar::new(),
            }
        }

        pub(crate) fn swap(&self, value: u32, order: Ordering) -> u32 {
            self.word.swap(value, order)
        }

        pub(crate) fn wait(&self, expected: u32, _deadline_ns: u64) -> io::Result<()> {
            let guard = self.queue.lock().unwrap();
            // SeqCst: the kernel's futex_wait issues a full barrier before reading the word.
            if self.word.load(Ordering::SeqCst) == expected {
                drop(self.sleepers.wait(guard).unwrap());
            }
            Ok(())
        }

        pub(crate) fn wake_all(&self) -> io::Result<()> {
            let _guard = self.queue.lock().unwrap();
            self.sleepers.notify_all();
            Ok(())
        }
    }

    /// Loom's model of the data area: one tracked cell per byte.
    #[derive(Clone)]
    pub(crate) struct SharedBytes {
        cells: std::sync::Arc<[UnsafeCell<u8>]>,
    }

    impl SharedBytes {
        pub(crate) fn new_model(len: usize) -> Self {
            Self {
                cells: (0..len).map(|_| UnsafeCell::new(0)).collect(),
            }
        }

        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            for (cell, byte) in self.cells[offset..offset + src.len()].iter().zip(src) {
                // SAFETY: loom checks that no other access to this cell is concurrent.
                cell.with_mut(|p| unsafe { *p = *byte });
            }
        }

        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            for (cell, byte) in self.cells[offset..offset + dst.len()].iter().zip(dst) {
                // SAFETY: loom checks that no other access to this cell is concurrent.
                *byte = cell.with(|p| unsafe { *p });
            }
        }
    }
}

pub(crate) use imp::{FutexWord, SharedBytes};
