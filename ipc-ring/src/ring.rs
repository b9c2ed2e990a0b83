//! A single-producer single-consumer ring of variable-length byte records, laid out so that
//! it can live in memory shared by two processes that do not trust each other.
//!
//! The producer appends whole records and never blocks: a full ring returns
//! [`PushError::Full`], nothing is overwritten. The consumer reads records in order, copying
//! them out. Both sides keep their own index in private memory and publish it; each side
//! also caches the other's index and reloads it only when the cached copy says "possibly
//! full" or "possibly empty", so the fast path touches no cache line the other side writes.
//!
//! Everything read from the other side (its index, record lengths and kinds) is checked
//! before use: a value that no honest peer could produce gives [`Corrupt`]. No operation
//! panics on such data, reads or writes outside the ring, or loops more than twice.
//!
//! ```
//! use molt_ipc_ring::ring;
//!
//! let (mut producer, mut consumer) = ring::with_capacity(1024).unwrap();
//! producer.push(b"first").unwrap();
//! producer.push(b"second").unwrap();
//! let mut out = Vec::new();
//! consumer.pop().unwrap().append_to(&mut out);
//! assert_eq!(out, b"first");
//! ```
//!
//! # Layout
//!
//! A ring is a control block ([`CONTROL_LEN`] bytes) followed by its data area
//! (`capacity` bytes, a power of two). The control block holds three words, each on its own
//! 128-byte line (x86 prefetches cache lines in pairs, so 64 would still share):
//! `head` (u64 at 0, written by the consumer), `tail` (u64 at 128, written by the producer)
//! and `consumer_sleeping` (u32 at 256, the futex word of [`crate::wait`]).
//!
//! `head` and `tail` are byte positions that only grow (u64: they cannot wrap in practice);
//! a position's offset in the data area is `position % capacity`. Both are multiples of 8 and
//! `tail - head <= capacity`. A record is an 8-byte header — `len: u32`, `kind: u32`
//! (1 frame, 2 padding) — then `len` bytes, then zero to seven bytes up to the next multiple
//! of 8. A record is never split across the end of the area: when it does not fit in what
//! is left, the producer fills the rest with one padding record (its `len` is ignored) and
//! starts the record at offset 0, in the same publication.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::frame;
use crate::spin::AdaptiveSpin;
use crate::sync::{AtomicU64, FutexWord, Ordering, SharedBytes};

/// Size of a ring's control block in bytes, before its data area.
pub const CONTROL_LEN: usize = 384;
/// Size of a record header: `len: u32`, `kind: u32`.
pub const RECORD_HEADER_LEN: usize = 8;
/// Smallest data area a ring may have.
pub const MIN_CAPACITY: usize = 64;
/// Largest data area a ring may have (1 GiB): record lengths are `u32`.
pub const MAX_CAPACITY: usize = 1 << 30;

const KIND_FRAME: u32 = 1;
const KIND_PADDING: u32 = 2;

/// The longest record a ring of `capacity` bytes accepts: half the area, less a header, so a
/// record always fits once the ring has drained, wherever the positions stand.
///
/// ```
/// assert_eq!(molt_ipc_ring::ring::max_record_len(1024), 504);
/// ```
pub const fn max_record_len(capacity: usize) -> usize {
    capacity / 2 - RECORD_HEADER_LEN
}

/// Whether `capacity` is a valid data-area size: a power of two in
/// [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`].
///
/// ```
/// use molt_ipc_ring::ring::is_valid_capacity;
/// assert!(is_valid_capacity(4096));
/// assert!(!is_valid_capacity(4095));
/// ```
pub const fn is_valid_capacity(capacity: usize) -> bool {
    capacity.is_power_of_two() && capacity >= MIN_CAPACITY && capacity <= MAX_CAPACITY
}

/// Bytes a record of `len` payload bytes occupies, header and alignment included.
const fn record_size(len: usize) -> usize {
    RECORD_HEADER_LEN + len.div_ceil(8) * 8
}

/// One word on its own pair of cache lines.
#[repr(C, align(128))]
struct Padded<T>(T);

/// The shared control block; see the module docs for its byte layout.
#[repr(C)]
pub(crate) struct RingControl {
    /// Consumer's position: written only by the consumer; untrusted when read by the producer.
    head: Padded<AtomicU64>,
    /// Producer's position: written only by the producer; untrusted when read by the consumer.
    tail: Padded<AtomicU64>,
    /// 1 while the consumer is about to sleep or sleeping on it, 0 otherwise.
    consumer_sleeping: Padded<FutexWord>,
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<RingControl>() == CONTROL_LEN);
    assert!(std::mem::offset_of!(RingControl, tail) == 128);
    assert!(std::mem::offset_of!(RingControl, consumer_sleeping) == 256);
};

impl RingControl {
    /// The waking half of the sleep handshake (see [`crate::wait`]), run after publishing
    /// something the consumer waits for (a record, or a closed segment state).
    pub(crate) fn notify_consumer(&self) {
        // AcqRel swap: every write to this word is an AcqRel swap, so all writes form one chain
        // in which each synchronizes with the one before. Either our swap comes after the
        // consumer's announcing swap (we read 1 and wake it), or before (its announcement
        // then reads our chain and sees what we published). Clearing the word also defeats
        // the wake that lands after the consumer's re-check but before its FUTEX_WAIT: the
        // kernel compares the word with 1, finds 0 and returns at once.
        if self.consumer_sleeping.0.swap(0, Ordering::AcqRel) != 0 {
            // A failed wake (impossible for a valid word) leaves the consumer to its sleep
            // slice deadline, which bounds every wait; nothing is lost.
            let _ = self.consumer_sleeping.0.wake_all();
        }
    }

    fn new() -> Self {
        Self {
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            consumer_sleeping: Padded(FutexWord::new(0)),
        }
    }
}

/// What the two endpoints of one ring share: where the control block and data area are, and
/// whatever keeps that memory alive.
struct RingMemory {
    /// Valid for the life of `_owner`; its atomics may be written by the peer at any time.
    control: NonNull<RingControl>,
    data: SharedBytes,
    /// A power of two within `MIN_CAPACITY..=MAX_CAPACITY`, fixed at construction.
    capacity: usize,
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the control block is only accessed through atomics (Sync), the data area through
// SharedBytes (Send + Sync), and the owner is Send + Sync; the pointer is never written.
unsafe impl Send for RingMemory {}

impl RingMemory {
    fn control(&self) -> &RingControl {
        // SAFETY: `_owner` keeps the control block alive and in place for as long as `self`
        // exists; it is only ever used through shared references to atomics.
        unsafe { self.control.as_ref() }
    }

    fn mask(&self) -> u64 {
        self.capacity as u64 - 1
    }

    /// Whether `head..tail` is a span an honest pair of endpoints could produce: both
    /// 8-byte aligned, head not after tail, at most `capacity` apart.
    fn plausible(&self, head: u64, tail: u64) -> bool {
        head % 8 == 0 && tail % 8 == 0 && tail.wrapping_sub(head) <= self.capacity as u64
    }
}

/// A value in the ring's shared memory that no honest peer could have written. The
/// connection that carries the ring can no longer be trusted and should be closed.
///
/// ```
/// let e = molt_ipc_ring::ring::Corrupt("tail out of range");
/// assert_eq!(e.to_string(), "corrupt ring: tail out of range");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt ring: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Why a record could not be appended.
///
/// ```
/// use molt_ipc_ring::ring::{self, PushError};
/// let (mut producer, _consumer) = ring::with_capacity(64).unwrap();
/// assert_eq!(producer.push(&[0; 100]), Err(PushError::TooLarge { len: 100, max: 24 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Not enough free space now; the record was not written. Retry after the consumer
    /// catches up, or report the peer as busy.
    Full,
    /// The record is longer than [`max_record_len`] of this ring and never fits.
    TooLarge {
        /// The length asked for.
        len: usize,
        /// The longest this ring accepts.
        max: usize,
    },
    /// The consumer's index is impossible.
    Corrupt(Corrupt),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("ring full"),
            Self::TooLarge { len, max } => write!(
                f,
                "record of {len} bytes exceeds the ring's maximum of {max}"
            ),
            Self::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for PushError {}

/// Why no record could be read.
///
/// ```
/// use molt_ipc_ring::ring::{self, PopError};
/// let (_producer, mut consumer) = ring::with_capacity(64).unwrap();
/// assert_eq!(consumer.pop().err(), Some(PopError::Empty));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Nothing published yet.
    Empty,
    /// The producer's index or a record header is impossible.
    Corrupt(Corrupt),
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("ring empty"),
            Self::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for PopError {}

/// The writing end of a ring.
///
/// ```
/// let (mut producer, _consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
/// producer.push(b"record").unwrap();
/// ```
pub struct Producer {
    memory: RingMemory,
    /// Our position. Always in sync with the shared `tail`, which only we write; we never
    /// read the shared copy back, since a hostile peer could have changed it.
    tail: u64,
    /// The consumer's position as last loaded. Can be stale (behind the real one), which only
    /// under-reports free space; resynchronized when the ring looks full.
    cached_head: u64,
}

/// The reading end of a ring.
///
/// ```
/// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
/// producer.push(b"record").unwrap();
/// consumer.pop().unwrap().consume();
/// ```
pub struct Consumer {
    memory: RingMemory,
    /// Our position. Always in sync with the shared `head`, which only we write.
    head: u64,
    /// The producer's position as last loaded. Can be stale (behind the real one), which only
    /// under-reports available records; resynchronized when the ring looks empty.
    cached_tail: u64,
    /// Whether [`Consumer::wait`](crate::wait) spins, learnt from its own recent waits.
    pub(crate) spin_policy: AdaptiveSpin,
}

/// Builds both endpoints of a ring whose control block and data area already exist.
///
/// # Safety
/// `control` must point to a `RingControl` whose head and tail are 0 and `data` to
/// `capacity` bytes, both valid (and not moved) for as long as `owner` lives, and no other
/// `Producer`/`Consumer` pair may use the same memory in this process.
#[cfg(not(loom))]
pub(crate) unsafe fn from_raw_parts(
    control: NonNull<RingControl>,
    data: NonNull<u8>,
    capacity: usize,
    owner: Arc<dyn Send + Sync>,
) -> (Producer, Consumer) {
    debug_assert!(is_valid_capacity(capacity));
    let make = |owner: Arc<dyn Send + Sync>| RingMemory {
        control,
        // SAFETY: `data` is valid for `capacity` bytes while `owner` lives, per our contract.
        data: unsafe { SharedBytes::new(data, capacity) },
        capacity,
        _owner: owner,
    };
    split(make(owner.clone()), make(owner))
}

/// Both endpoints of a ring that has not been used yet: head and tail at 0 (a new ring, or a
/// segment whose header check found them there).
fn split(producer_memory: RingMemory, consumer_memory: RingMemory) -> (Producer, Consumer) {
    (
        Producer {
            memory: producer_memory,
            tail: 0,
            cached_head: 0,
        },
        Consumer {
            memory: consumer_memory,
            head: 0,
            cached_tail: 0,
            spin_policy: AdaptiveSpin::new(),
        },
    )
}

/// A ring in ordinary heap memory, for use between threads of one process (and for tests,
/// benchmarks and Miri). `capacity` must satisfy [`is_valid_capacity`].
///
/// ```
/// use molt_ipc_ring::ring;
/// assert!(ring::with_capacity(1000).is_none()); // not a power of two
/// let (mut producer, mut consumer) = ring::with_capacity(256).unwrap();
/// producer.push(b"x").unwrap();
/// assert_eq!(consumer.pop().unwrap().len(), 1);
/// ```
pub fn with_capacity(capacity: usize) -> Option<(Producer, Consumer)> {
    if !is_valid_capacity(capacity) {
        return None;
    }
    Some(heap::new(capacity))
}

#[cfg(not(loom))]
mod heap {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};

    /// A control block and a zeroed data area on the heap.
    struct HeapRing {
        control: RingControl,
        data: NonNull<u8>,
        layout: Layout,
    }

    // SAFETY: `data` is an allocation owned by this value and only accessed through
    // SharedBytes by the endpoints, which synchronize through the control block's atomics.
    unsafe impl Send for HeapRing {}
    // SAFETY: as above; a shared HeapRing exposes nothing but the atomics.
    unsafe impl Sync for HeapRing {}

    impl Drop for HeapRing {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with exactly this layout, freed once, here.
            unsafe { dealloc(self.data.as_ptr(), self.layout) }
        }
    }

    pub(super) fn new(capacity: usize) -> (Producer, Consumer) {
        let layout =
            Layout::from_size_align(capacity, 128).expect("valid capacity is a small power of two");
        // SAFETY: the layout has a non-zero size (capacity >= MIN_CAPACITY).
        let data = NonNull::new(unsafe { alloc_zeroed(layout) })
            .unwrap_or_else(|| handle_alloc_error(layout));
        let ring = Arc::new(HeapRing {
            control: RingControl::new(),
            data,
            layout,
        });
        let control = NonNull::from(&ring.control);
        // SAFETY: `ring` owns both the control block (in the Arc, never moved) and `data`, and
        // is passed as the owner; this is the only endpoint pair for this memory.
        unsafe { from_raw_parts(control, data, capacity, ring) }
    }
}

#[cfg(loom)]
mod heap {
    use super::*;

    pub(super) fn new(capacity: usize) -> (Producer, Consumer) {
        let control = Arc::new(RingControl::new());
        let pointer = NonNull::from(&*control);
        let data = SharedBytes::new_model(capacity);
        let make = |data, owner: Arc<dyn Send + Sync>| RingMemory {
            control: pointer,
            data,
            capacity,
            _owner: owner,
        };
        split(make(data.clone(), control.clone()), make(data, control))
    }
}

impl Producer {
    /// Reserves room for a record of exactly `len` bytes, to be filled with
    /// [`Reservation::write`] and published with [`Reservation::commit`]. Lets a caller
    /// encode a frame's header, entry and payload straight into the ring.
    ///
    /// ```
    /// use molt_ipc_ring::ring;
    /// let (mut producer, mut consumer) = ring::with_capacity(256).unwrap();
    /// let mut slot = producer.reserve(5).unwrap();
    /// slot.write(b"he");
    /// slot.write(b"llo");
    /// slot.commit();
    /// let mut out = Vec::new();
    /// consumer.pop().unwrap().append_to(&mut out);
    /// assert_eq!(out, b"hello");
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>, PushError> {
        let max = max_record_len(self.memory.capacity);
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let capacity = self.memory.capacity as u64;
        let size = record_size(len) as u64;
        let offset = self.tail & self.memory.mask();
        let to_end = capacity - offset;
        let padding = if size <= to_end { 0 } else { to_end };
        let needed = padding + size;
        if capacity - (self.tail - self.cached_head) < needed {
            // Acquire: the consumer's Release store of head comes after its last read of the
            // bytes we are about to overwrite.
            let head = self.memory.control().head.0.load(Ordering::Acquire);
            if !self.memory.plausible(head, self.tail) {
                return Err(PushError::Corrupt(Corrupt("consumer index out of range")));
            }
            self.cached_head = head;
            if capacity - (self.tail - head) < needed {
                return Err(PushError::Full);
            }
        }
        Ok(Reservation {
            producer: self,
            len,
            padding,
            written: 0,
        })
    }

    /// Appends one record holding `record`, or fails without writing anything.
    ///
    /// ```
    /// use molt_ipc_ring::ring::{self, PushError};
    /// let (mut producer, _consumer) = ring::with_capacity(64).unwrap();
    /// producer.push(&[1; 24]).unwrap();
    /// producer.push(&[2; 24]).unwrap();
    /// assert_eq!(producer.push(&[3; 24]), Err(PushError::Full));
    /// ```
    pub fn push(&mut self, record: &[u8]) -> Result<(), PushError> {
        let mut slot = self.reserve(record.len())?;
        slot.write(record);
        slot.commit();
        Ok(())
    }

    /// The longest record this ring accepts.
    ///
    /// ```
    /// let (producer, _) = molt_ipc_ring::ring::with_capacity(128).unwrap();
    /// assert_eq!(producer.max_record_len(), 56);
    /// ```
    pub fn max_record_len(&self) -> usize {
        max_record_len(self.memory.capacity)
    }

    fn write_record_header(&self, position: u64, len: u32, kind: u32) {
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&kind.to_le_bytes());
        let offset = (position & self.memory.mask()) as usize;
        // SAFETY: positions are multiples of 8 and the area's size is a multiple of 8, so the
        // 8 header bytes lie inside it; they are free space (between tail and head +
        // capacity), which only the producer touches until it publishes them.
        unsafe { self.memory.data.write(offset, &header) }
    }
}

/// Room for one record, reserved by [`Producer::reserve`]. Dropping it without
/// [`commit`](Self::commit) publishes nothing.
///
/// ```
/// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
/// let mut slot = producer.reserve(2).unwrap();
/// slot.write(b"ok");
/// slot.commit();
/// assert_eq!(consumer.pop().unwrap().len(), 2);
/// ```
pub struct Reservation<'a> {
    producer: &'a mut Producer,
    /// Record length; fits the free space checked by `reserve`.
    len: usize,
    /// Bytes of padding record before the record (0, or the rest of the area up to its end).
    padding: u64,
    /// Bytes written so far, at most `len`.
    written: usize,
}

impl Reservation<'_> {
    /// Appends `bytes` to the record.
    ///
    /// # Panics
    /// If the record would exceed the length reserved: a bug in the caller, never a property
    /// of data from the peer.
    ///
    /// ```
    /// let (mut producer, _) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// let mut slot = producer.reserve(3).unwrap();
    /// slot.write(b"abc");
    /// slot.commit();
    /// ```
    pub fn write(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len() <= self.len - self.written,
            "write beyond the reserved record length"
        );
        let start =
            self.producer.tail + self.padding + RECORD_HEADER_LEN as u64 + self.written as u64;
        let offset = (start & self.producer.memory.mask()) as usize;
        // SAFETY: the record, header included, lies within one stretch of the data area
        // (reserve placed it so it does not cross the end) and within free space that
        // only the producer touches until commit publishes it.
        unsafe { self.producer.memory.data.write(offset, bytes) }
        self.written += bytes.len();
    }

    /// Publishes the record to the consumer and wakes it if it announced that it sleeps.
    ///
    /// # Panics
    /// If fewer bytes were written than reserved (a caller bug).
    ///
    /// ```
    /// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// producer.reserve(0).unwrap().commit();
    /// assert_eq!(consumer.pop().unwrap().len(), 0);
    /// ```
    pub fn commit(self) {
        assert_eq!(self.written, self.len, "commit of a partly written record");
        let producer = self.producer;
        if self.padding > 0 {
            producer.write_record_header(producer.tail, 0, KIND_PADDING);
        }
        let start = producer.tail + self.padding;
        // len <= max_record_len < 2^30 fits u32.
        producer.write_record_header(start, self.len as u32, KIND_FRAME);
        producer.tail = start + record_size(self.len) as u64;
        let control = producer.memory.control();
        // Release: the record's bytes must be visible before the position that publishes them.
        control.tail.0.store(producer.tail, Ordering::Release);
        control.notify_consumer();
    }
}

impl Consumer {
    /// The oldest unread record, left in the ring until [`Record::consume`]. Skips one
    /// padding record at the end of the area.
    ///
    /// ```
    /// use molt_ipc_ring::ring;
    /// let (mut producer, mut consumer) = ring::with_capacity(64).unwrap();
    /// producer.push(b"abc").unwrap();
    /// let record = consumer.pop().unwrap();
    /// assert_eq!(record.len(), 3);
    /// record.consume();
    /// assert!(consumer.pop().is_err());
    /// ```
    pub fn pop(&mut self) -> Result<Record<'_>, PopError> {
        let mut skipped_padding = false;
        loop {
            if self.head == self.cached_tail && !self.refresh_tail().map_err(PopError::Corrupt)? {
                return Err(PopError::Empty);
            }
            let available = self.cached_tail - self.head;
            let offset = (self.head & self.memory.mask()) as usize;
            let mut header = [0u8; RECORD_HEADER_LEN];
            // SAFETY: offset is a multiple of 8 below capacity (a multiple of 8), so 8 bytes
            // fit; they lie between head and tail, published to us by the Acquire load.
            unsafe { self.memory.data.read(offset, &mut header) };
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let kind = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let to_end = (self.memory.capacity - offset) as u64;
            match kind {
                KIND_PADDING => {
                    // The producer pads only from mid-area, at most once before a record.
                    if skipped_padding || offset == 0 || to_end >= available {
                        return Err(PopError::Corrupt(Corrupt("misplaced padding record")));
                    }
                    skipped_padding = true;
                    self.advance_head(to_end);
                }
                KIND_FRAME => {
                    if len > max_record_len(self.memory.capacity) {
                        return Err(PopError::Corrupt(Corrupt(
                            "record length exceeds the ring's maximum",
                        )));
                    }
                    let size = record_size(len) as u64;
                    if size > available || size > to_end {
                        return Err(PopError::Corrupt(Corrupt(
                            "record extends beyond published data",
                        )));
                    }
                    return Ok(Record {
                        consumer: self,
                        offset: offset + RECORD_HEADER_LEN,
                        len,
                        size,
                    });
                }
                _ => return Err(PopError::Corrupt(Corrupt("unknown record kind"))),
            }
        }
    }

    /// Whether a record (or padding before one) is waiting, reloading the producer's index if
    /// the cached one says the ring is empty.
    ///
    /// ```
    /// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// assert!(!consumer.has_data().unwrap());
    /// producer.push(b"x").unwrap();
    /// assert!(consumer.has_data().unwrap());
    /// ```
    pub fn has_data(&mut self) -> Result<bool, Corrupt> {
        if self.head != self.cached_tail {
            return Ok(true);
        }
        self.refresh_tail()
    }

    /// Loads the producer's position; `Ok(false)` if there is still nothing to read.
    fn refresh_tail(&mut self) -> Result<bool, Corrupt> {
        // Acquire: pairs with the producer's Release store, making the record bytes it
        // published visible before we read them.
        let tail = self.memory.control().tail.0.load(Ordering::Acquire);
        if !self.memory.plausible(self.head, tail) {
            return Err(Corrupt("producer index out of range"));
        }
        self.cached_tail = tail;
        Ok(tail != self.head)
    }

    fn advance_head(&mut self, by: u64) {
        self.head += by;
        // Release: our reads of the freed bytes happen before the producer may reuse them.
        self.memory
            .control()
            .head
            .0
            .store(self.head, Ordering::Release);
    }

    pub(crate) fn sleeping_word(&self) -> &FutexWord {
        &self.memory.control().consumer_sleeping.0
    }
}

/// A record at the front of the ring, still in place: the producer cannot overwrite it until
/// [`consume`](Self::consume). The bytes are copied out, never lent, because the peer can
/// rewrite shared memory at any moment; the copy is what the caller decodes.
///
/// ```
/// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
/// producer.push(b"abc").unwrap();
/// let record = consumer.pop().unwrap();
/// let mut copy = Vec::new();
/// record.append_to(&mut copy);
/// record.consume();
/// assert_eq!(copy, b"abc");
/// ```
pub struct Record<'a> {
    consumer: &'a mut Consumer,
    /// Offset of the first record byte in the data area; `offset + len` is within the area.
    offset: usize,
    len: usize,
    /// Bytes the record occupies, header included.
    size: u64,
}

impl Record<'_> {
    /// Length of the record in bytes (checked against the ring when it was popped).
    ///
    /// ```
    /// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// producer.push(b"four").unwrap();
    /// assert_eq!(consumer.pop().unwrap().len(), 4);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Copies the first `min(len, dst.len())` bytes into `dst`; returns how many.
    ///
    /// ```
    /// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// producer.push(b"abcdef").unwrap();
    /// let mut first = [0u8; 2];
    /// assert_eq!(consumer.pop().unwrap().copy_prefix(&mut first), 2);
    /// assert_eq!(&first, b"ab");
    /// ```
    pub fn copy_prefix(&self, dst: &mut [u8]) -> usize {
        let n = self.len.min(dst.len());
        // SAFETY: offset + len is within the data area (checked in pop), n <= len, and the
        // bytes were published to us and stay ours until consume.
        unsafe { self.consumer.memory.data.read(self.offset, &mut dst[..n]) };
        n
    }

    /// Appends the whole record to `out`.
    ///
    /// ```
    /// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// producer.push(b"xyz").unwrap();
    /// let mut out = b"<".to_vec();
    /// consumer.pop().unwrap().append_to(&mut out);
    /// assert_eq!(out, b"<xyz");
    /// ```
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.len, 0);
        self.copy_prefix(&mut out[start..]);
    }

    /// `(request_id, deadline_ns)` from the frame header at the start of the record, read
    /// without copying the rest; `None` if the record is shorter than a frame header. Lets
    /// the worker drop an expired call before decoding it.
    ///
    /// ```
    /// use molt_ipc_ring::frame::{Codec, Frame};
    /// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(256).unwrap();
    /// producer.push(&Frame::call(3, "e", Codec::Raw, b"").with_deadline_ns(99).encode_to_vec()).unwrap();
    /// assert_eq!(consumer.pop().unwrap().peek_deadline(), Some((3, 99)));
    /// ```
    pub fn peek_deadline(&self) -> Option<(u64, u64)> {
        let mut header = [0u8; frame::HEADER_LEN];
        if self.copy_prefix(&mut header) < frame::HEADER_LEN {
            return None;
        }
        frame::peek_deadline(&header)
    }

    /// Removes the record from the ring, giving its space back to the producer.
    ///
    /// ```
    /// let (mut producer, mut consumer) = molt_ipc_ring::ring::with_capacity(64).unwrap();
    /// producer.push(b"a").unwrap();
    /// consumer.pop().unwrap().consume();
    /// assert!(!consumer.has_data().unwrap());
    /// ```
    pub fn consume(self) {
        self.consumer.advance_head(self.size);
    }
}

impl RingControl {
    /// Whether no record was ever published or consumed: the state a segment is attached in.
    #[cfg(not(loom))]
    pub(crate) fn is_fresh(&self) -> bool {
        // Relaxed: the segment arrived over a socket after its creator initialized it; the
        // syscalls in between order these loads, and a wrong answer only refuses the segment.
        self.head.0.load(Ordering::Relaxed) == 0 && self.tail.0.load(Ordering::Relaxed) == 0
    }
}
