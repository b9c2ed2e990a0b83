//! The atomics, futex and shared byte area the ring is built on, swapped for loom's models
//! under `cfg(loom)` so the very same ring and handshake code is model-checked.
//!
//! - [`FutexWord`]: a shared `u32` that a thread can sleep on. Normally an `AtomicU32` with
//!   the kernel's futex; under loom a word plus a mutex and condition variable, which give the
//!   two properties the handshake relies on: "compare and sleep" is atomic with respect to a
//!   wake, and a wake reaches every sleeper.
//! - [`SharedBytes`]: the ring's data area. Normally a raw pointer into a mapping or a heap
//!   block, copied in and out with relaxed atomic words (a peer may write it at any time);
//!   under loom a slice of `loom::cell::UnsafeCell<u8>`, so loom reports any read that
//!   the index protocol does not order after the write it reads (a torn or stale frame).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
mod imp {
    use super::{AtomicU32, AtomicU64, Ordering};
    use crate::platform::futex;
    use std::io;
    use std::ptr::NonNull;
    use std::sync::atomic::AtomicU8;

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

    /// The ring's data area (and, for the segment, its header): `len` bytes that another
    /// thread or process may write.
    ///
    /// Reads copy out; nothing ever hands out a reference into the area, because the peer
    /// may rewrite it at any time.
    ///
    /// # Why atomic copies
    ///
    /// A hostile peer can write any byte of its segment at any moment, including bytes the
    /// ring protocol says are ours. A plain copy (`copy_nonoverlapping`, `memcpy`) racing
    /// with such a write is a data race, and so undefined behaviour, even though every copied
    /// value is validated afterwards: the compiler may assume the source is stable while it
    /// copies (crossbeam's `AtomicCell` notes the same of volatile reads: "data races are
    /// *always* UB, even if we use volatile reads and discard the data"; the sound
    /// alternative is atomic access). So both copies move the bytes with relaxed atomic
    /// loads and stores: aligned `AtomicU64` words in the middle, `AtomicU8` at unaligned
    /// edges. A relaxed atomic access never races; all we rely on is what it guarantees,
    /// that each load returns some value the memory held, each store is not torn, and
    /// neither is invented or repeated by the compiler. Nothing here orders anything: the
    /// ring's Acquire/Release on head and tail does, and with an honest peer these accesses
    /// never overlap the peer's (so mixing word and byte sizes across the two sides is
    /// never a racing mixed-size access). On x86-64 and aarch64 a relaxed load or store is a
    /// plain `mov`/`ldr`, one per word; what it costs is that the compiler cannot widen the
    /// loop into vector copies (`cargo bench -p molt-ipc-ring --bench ring -- copy`).
    pub(crate) struct SharedBytes {
        /// Valid for reads and writes of `len` bytes for as long as the owner that created this
        /// value keeps the memory alive (the ring's endpoints hold that owner).
        ptr: NonNull<u8>,
        len: usize,
    }

    // SAFETY: SharedBytes is a pointer to memory that is designed to be accessed from several
    // threads and processes; every access goes through the atomic copies below, whose
    // callers order them with the ring's atomics.
    unsafe impl Send for SharedBytes {}
    // SAFETY: as above; `&SharedBytes` only offers the same copying accessors.
    unsafe impl Sync for SharedBytes {}

    const WORD: usize = std::mem::size_of::<u64>();

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
        /// use of those bytes (a hostile peer may still write them: see the type's docs).
        pub(crate) unsafe fn write(&self, offset: usize, src: &[u8]) {
            debug_assert!(offset + src.len() <= self.len);
            // SAFETY: in bounds by the caller's contract, so the pointer and every one after
            // it up to `src.len()` lie in the area.
            let start = unsafe { self.ptr.as_ptr().add(offset) };
            let (head, words, tail) = split_at_words(start, src.len());
            let (src_head, rest) = src.split_at(head);
            let (src_words, src_tail) = rest.split_at(words * WORD);
            for (i, byte) in src_head.iter().enumerate() {
                // SAFETY: in the area (see above); any address is aligned for a byte.
                unsafe { byte_at(start.add(i)) }.store(*byte, Ordering::Relaxed);
            }
            // SAFETY: `start + head` is in the area and 8-aligned by `split_at_words`.
            let word_start = unsafe { start.add(head) };
            for (i, chunk) in src_words.chunks_exact(WORD).enumerate() {
                let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
                // SAFETY: the `words` aligned words after `word_start` are in the area.
                unsafe { word_at(word_start.add(i * WORD)) }.store(word, Ordering::Relaxed);
            }
            // SAFETY: in the area: `head + words * 8 + tail == src.len()`.
            let tail_start = unsafe { word_start.add(words * WORD) };
            for (i, byte) in src_tail.iter().enumerate() {
                // SAFETY: as for the head bytes.
                unsafe { byte_at(tail_start.add(i)) }.store(*byte, Ordering::Relaxed);
            }
            debug_assert_eq!(tail, src_tail.len());
        }

        /// Copies `dst.len()` bytes from `offset` into `dst`.
        ///
        /// # Safety
        /// `offset + dst.len() <= len`, and the ring protocol must have published those bytes
        /// to this side (a hostile peer may still write them: see the type's docs).
        pub(crate) unsafe fn read(&self, offset: usize, dst: &mut [u8]) {
            debug_assert!(offset + dst.len() <= self.len);
            // SAFETY: in bounds by the caller's contract, as in `write`.
            let start = unsafe { self.ptr.as_ptr().add(offset) };
            let (head, words, tail) = split_at_words(start, dst.len());
            let (dst_head, rest) = dst.split_at_mut(head);
            let (dst_words, dst_tail) = rest.split_at_mut(words * WORD);
            for (i, byte) in dst_head.iter_mut().enumerate() {
                // SAFETY: in the area; any address is aligned for a byte.
                *byte = unsafe { byte_at(start.add(i)) }.load(Ordering::Relaxed);
            }
            // SAFETY: `start + head` is in the area and 8-aligned by `split_at_words`.
            let word_start = unsafe { start.add(head) };
            for (i, chunk) in dst_words.chunks_exact_mut(WORD).enumerate() {
                // SAFETY: the `words` aligned words after `word_start` are in the area.
                let word = unsafe { word_at(word_start.add(i * WORD)) }.load(Ordering::Relaxed);
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            // SAFETY: in the area: `head + words * 8 + tail == dst.len()`.
            let tail_start = unsafe { word_start.add(words * WORD) };
            for (i, byte) in dst_tail.iter_mut().enumerate() {
                // SAFETY: as for the head bytes.
                *byte = unsafe { byte_at(tail_start.add(i)) }.load(Ordering::Relaxed);
            }
            debug_assert_eq!(tail, dst_tail.len());
        }
    }

    /// Splits `len` bytes from `start` into leading bytes up to the first 8-aligned address,
    /// whole aligned words, and trailing bytes: `(head, words, tail)` with
    /// `head + 8 * words + tail == len`.
    fn split_at_words(start: *const u8, len: usize) -> (usize, usize, usize) {
        let head = start.align_offset(WORD).min(len);
        let words = (len - head) / WORD;
        (head, words, len - head - words * WORD)
    }

    /// # Safety
    /// `ptr` lies in a live `SharedBytes` area (valid for reads and writes).
    unsafe fn byte_at<'a>(ptr: *mut u8) -> &'a AtomicU8 {
        // SAFETY: valid by the caller's contract; every access to the area is atomic.
        unsafe { AtomicU8::from_ptr(ptr) }
    }

    /// # Safety
    /// `ptr` is 8-aligned and the 8 bytes from it lie in a live `SharedBytes` area.
    unsafe fn word_at<'a>(ptr: *mut u8) -> &'a AtomicU64 {
        // SAFETY: valid and aligned by the caller's contract (AtomicU64 is 8-aligned on every
        // target); every access to the area is atomic.
        unsafe { AtomicU64::from_ptr(ptr.cast()) }
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
