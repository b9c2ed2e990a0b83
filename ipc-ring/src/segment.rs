//! One shared-memory segment per client connection: a header, the request ring (client to
//! worker) and the response ring (worker to client), in one sealed memfd.
//!
//! The worker creates and initializes it ([`WorkerSide::create`]) and sends the descriptor
//! over the control socket; the client maps what it received and checks every header field
//! before use ([`ClientSide::attach`]). Header fields are copied out once and checked on the
//! copy, so a peer that rewrites them afterwards changes nothing.
//!
//! ```
//! use molt_ipc_ring::segment::{ClientSide, SegmentConfig, WorkerSide};
//!
//! let (mut worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
//! let mut client = ClientSide::attach(file).unwrap();
//! client.requests.push(b"ping").unwrap();
//! let mut got = Vec::new();
//! worker.requests.pop().unwrap().append_to(&mut got);
//! assert_eq!(got, b"ping");
//! ```
//!
//! # Layout
//!
//! All integers little-endian (the segment never leaves the machine); `docs/protocol.md`,
//! "Shared-memory transport", has the same table.
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | 8 bytes | magic `"MOLTSHM\0"` |
//! | 8 | u32 | layout version = 1 |
//! | 12 | u32 | header length = 128 |
//! | 16 | u64 | segment length (= the memfd's size) |
//! | 24 | u32 | creator pid |
//! | 28 | u32 | state (atomic): 1 ready, 2 closed |
//! | 32 | u64 | request ring offset |
//! | 40 | u64 | request ring capacity |
//! | 48 | u64 | response ring offset |
//! | 56 | u64 | response ring capacity |
//! | 64 | 64 bytes | reserved, zero |
//!
//! Each ring is a control block then its data area (see [`crate::ring`]); ring offsets are
//! multiples of 128, rings lie after the header and do not overlap.

use std::fmt;
use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapMut, MmapOptions};

use crate::platform::memfd;
use crate::ring::{self, Consumer, Producer, RingControl, CONTROL_LEN};
use crate::sync::{AtomicU32, Ordering, SharedBytes};

/// The first 8 bytes of every segment.
pub const MAGIC: [u8; 8] = *b"MOLTSHM\0";
/// The layout version this crate writes and accepts.
pub const LAYOUT_VERSION: u32 = 1;
/// Size of the segment header in bytes; the first ring starts at or after it.
pub const HEADER_LEN: usize = 128;
/// `state` of a segment in use.
pub const STATE_READY: u32 = 1;
/// `state` of a segment that either side has closed.
pub const STATE_CLOSED: u32 = 2;

const STATE_OFFSET: usize = 28;
const RING_ALIGN: u64 = 128;

/// Sizes of the two rings' data areas.
///
/// ```
/// use molt_ipc_ring::segment::SegmentConfig;
/// let config = SegmentConfig { request_capacity: 1 << 16, ..SegmentConfig::default() };
/// assert!(config.validate().is_ok());
/// assert!(SegmentConfig { request_capacity: 100, ..config }.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentConfig {
    /// Data area of the request ring (client to worker); a valid ring capacity.
    pub request_capacity: usize,
    /// Data area of the response ring (worker to client); a valid ring capacity.
    pub response_capacity: usize,
}

impl Default for SegmentConfig {
    /// [`DEFAULT_RING_CAPACITY`](Self::DEFAULT_RING_CAPACITY) each way.
    fn default() -> Self {
        Self {
            request_capacity: Self::DEFAULT_RING_CAPACITY,
            response_capacity: Self::DEFAULT_RING_CAPACITY,
        }
    }
}

impl SegmentConfig {
    /// Data area of each ring unless configured otherwise: 1 MiB, so frames up to 512 KiB
    /// less 8 bytes. The pages of a memfd are only allocated when touched, so an idle
    /// connection costs far less.
    ///
    /// ```
    /// use molt_ipc_ring::segment::SegmentConfig;
    /// assert_eq!(SegmentConfig::default().response_capacity, SegmentConfig::DEFAULT_RING_CAPACITY);
    /// ```
    pub const DEFAULT_RING_CAPACITY: usize = 1 << 20;

    /// Checks both capacities with [`ring::is_valid_capacity`].
    ///
    /// ```
    /// use molt_ipc_ring::segment::SegmentConfig;
    /// assert!(SegmentConfig::default().validate().is_ok());
    /// ```
    pub fn validate(&self) -> io::Result<()> {
        if ring::is_valid_capacity(self.request_capacity)
            && ring::is_valid_capacity(self.response_capacity)
        {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring capacities must be powers of two between 64 bytes and 1 GiB",
            ))
        }
    }
}

/// Why a received segment was refused.
///
/// ```
/// use molt_ipc_ring::segment::AttachError;
/// assert_eq!(AttachError::BadMagic.to_string(), "segment: bad magic");
/// ```
#[derive(Debug)]
pub enum AttachError {
    /// The descriptor is not a sealed memfd, or could not be mapped.
    Io(io::Error),
    /// Shorter than a header, or its header disagrees with its size.
    BadLength,
    /// Not a molt segment.
    BadMagic,
    /// A layout version this build does not speak.
    BadVersion(u32),
    /// A ring's offset or capacity is impossible.
    BadRing(&'static str),
    /// The segment is not in the ready state, or its rings are not fresh.
    NotReady,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "segment: {e}"),
            Self::BadLength => f.write_str("segment: length disagrees with header"),
            Self::BadMagic => f.write_str("segment: bad magic"),
            Self::BadVersion(v) => write!(f, "segment: unsupported layout version {v}"),
            Self::BadRing(why) => write!(f, "segment: {why}"),
            Self::NotReady => f.write_str("segment: not ready"),
        }
    }
}

impl std::error::Error for AttachError {}

impl From<io::Error> for AttachError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Where the two rings sit, as derived from a validated header.
#[derive(Clone, Copy, Debug)]
struct Layout {
    len: usize,
    request: RingPlace,
    response: RingPlace,
}

#[derive(Clone, Copy, Debug)]
struct RingPlace {
    /// Offset of the control block; a multiple of 128; the data area follows it.
    offset: usize,
    capacity: usize,
}

impl RingPlace {
    fn end(&self) -> usize {
        self.offset + CONTROL_LEN + self.capacity
    }
}

impl Layout {
    fn for_config(config: &SegmentConfig) -> Self {
        let request = RingPlace {
            offset: HEADER_LEN,
            capacity: config.request_capacity,
        };
        let response_offset = align_up(request.end() as u64, RING_ALIGN) as usize;
        let response = RingPlace {
            offset: response_offset,
            capacity: config.response_capacity,
        };
        let len = align_up(response.end() as u64, page_size()) as usize;
        Self {
            len,
            request,
            response,
        }
    }

    fn write_header(&self, header: &mut [u8]) {
        header[..HEADER_LEN].fill(0);
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        header[16..24].copy_from_slice(&(self.len as u64).to_le_bytes());
        header[24..28].copy_from_slice(&std::process::id().to_le_bytes());
        header[28..32].copy_from_slice(&STATE_READY.to_le_bytes());
        header[32..40].copy_from_slice(&(self.request.offset as u64).to_le_bytes());
        header[40..48].copy_from_slice(&(self.request.capacity as u64).to_le_bytes());
        header[48..56].copy_from_slice(&(self.response.offset as u64).to_le_bytes());
        header[56..64].copy_from_slice(&(self.response.capacity as u64).to_le_bytes());
    }

    /// Checks a header copy against the mapped length; every field is untrusted.
    fn parse(header: &[u8; HEADER_LEN], mapped_len: usize) -> Result<Self, AttachError> {
        let u32_at =
            |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let u64_at =
            |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        if header[0..8] != MAGIC {
            return Err(AttachError::BadMagic);
        }
        let version = u32_at(8);
        if version != LAYOUT_VERSION {
            return Err(AttachError::BadVersion(version));
        }
        if u32_at(12) as usize != HEADER_LEN || u64_at(16) != mapped_len as u64 {
            return Err(AttachError::BadLength);
        }
        if u32_at(STATE_OFFSET) != STATE_READY {
            return Err(AttachError::NotReady);
        }
        let place = |offset: u64, capacity: u64| -> Result<RingPlace, AttachError> {
            let capacity = usize::try_from(capacity)
                .map_err(|_| AttachError::BadRing("ring capacity too large"))?;
            if !ring::is_valid_capacity(capacity) {
                return Err(AttachError::BadRing(
                    "ring capacity not a power of two in range",
                ));
            }
            if offset % RING_ALIGN != 0 || offset < HEADER_LEN as u64 {
                return Err(AttachError::BadRing(
                    "ring offset misaligned or inside the header",
                ));
            }
            let end = offset.checked_add((CONTROL_LEN + capacity) as u64);
            if !matches!(end, Some(end) if end <= mapped_len as u64) {
                return Err(AttachError::BadRing("ring extends beyond the segment"));
            }
            // offset < end <= mapped_len, which is a usize.
            Ok(RingPlace {
                offset: offset as usize,
                capacity,
            })
        };
        let request = place(u64_at(32), u64_at(40))?;
        let response = place(u64_at(48), u64_at(56))?;
        if request.offset < response.end() && response.offset < request.end() {
            return Err(AttachError::BadRing("rings overlap"));
        }
        Ok(Self {
            len: mapped_len,
            request,
            response,
        })
    }
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

fn page_size() -> u64 {
    // SAFETY: sysconf with a valid name only reads process configuration.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// The segment header as shared bytes, copied only with atomic accesses.
///
/// # Safety
/// `base` is the start of a live mapping of at least [`HEADER_LEN`] bytes, valid for reads
/// and writes while the returned value is used.
unsafe fn header_bytes(base: NonNull<u8>) -> SharedBytes {
    // SAFETY: by the caller's contract.
    unsafe { SharedBytes::new(base, HEADER_LEN) }
}

/// A mapped segment and where its parts are; kept alive by every endpoint built from it.
struct Mapping {
    /// The shared mapping; its base pointer was taken once, before this value was shared,
    /// and all access goes through that pointer.
    _map: MmapMut,
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the mapping is plain shared memory; the endpoints that use `base` synchronize
// through the atomics it contains, and MmapMut itself is Send + Sync.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(
        file: &File,
        len: usize,
        layout_of: impl FnOnce(&[u8; HEADER_LEN]) -> Result<Layout, AttachError>,
    ) -> Result<Arc<Self>, AttachError> {
        // SAFETY: the memfd is sealed against shrinking (checked or set by the caller), so
        // the mapped pages cannot disappear under us; the memory is only accessed through
        // raw pointers and atomics, never through references that assume exclusivity.
        let mut map = unsafe { MmapOptions::new().len(len).map_mut(file) }?;
        let base = NonNull::new(map.as_mut_ptr()).ok_or(AttachError::BadLength)?;
        let mut header = [0u8; HEADER_LEN];
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked by both callers); the
        // header is read with atomic copies because the peer may be rewriting it right now
        // (see SharedBytes); the copy is what gets validated.
        unsafe { header_bytes(base).read(0, &mut header) };
        let layout = layout_of(&header)?;
        Ok(Arc::new(Self {
            _map: map,
            base,
            layout,
        }))
    }

    fn control(&self, place: RingPlace) -> NonNull<RingControl> {
        // SAFETY: `place` comes from a validated layout: offset + CONTROL_LEN lies within the
        // mapping and the offset is 128-aligned, as RingControl requires.
        unsafe { NonNull::new_unchecked(self.base.as_ptr().add(place.offset).cast()) }
    }

    fn data(&self, place: RingPlace) -> NonNull<u8> {
        // SAFETY: as in `control`; the data area follows the control block within the mapping.
        unsafe { NonNull::new_unchecked(self.base.as_ptr().add(place.offset + CONTROL_LEN)) }
    }

    fn state(&self) -> &AtomicU32 {
        // SAFETY: offset 28 is 4-aligned and inside the header of a live mapping; the word is
        // only accessed atomically by both sides.
        unsafe { &*self.base.as_ptr().add(STATE_OFFSET).cast::<AtomicU32>() }
    }

    fn ring(self: &Arc<Self>, place: RingPlace) -> (Producer, Consumer) {
        // SAFETY: control block and data area lie in the mapping that `self` keeps alive and
        // never moves; the head and tail are 0 (fresh, or checked on attach); each side builds
        // each ring once, and uses only the endpoint its role owns.
        unsafe {
            ring::from_raw_parts(
                self.control(place),
                self.data(place),
                place.capacity,
                self.clone(),
            )
        }
    }
}

/// The state word of a segment, shared by both sides: either side closes, both notice.
///
/// ```
/// use molt_ipc_ring::segment::{ClientSide, SegmentConfig, WorkerSide};
/// let (worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
/// let client = ClientSide::attach(file).unwrap();
/// client.state.close();
/// assert!(worker.state.is_closed());
/// ```
pub struct SegmentState {
    mapping: Arc<Mapping>,
}

impl SegmentState {
    /// Marks the segment closed and wakes both consumers, so a waiter on either side returns
    /// [`WaitOutcome::Closed`](crate::wait::WaitOutcome::Closed) at once.
    ///
    /// ```
    /// use molt_ipc_ring::segment::{SegmentConfig, WorkerSide};
    /// let (worker, _file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
    /// worker.state.close();
    /// assert!(worker.state.is_closed());
    /// ```
    pub fn close(&self) {
        // Release: whatever this side wrote before closing is visible to a peer that sees
        // the closed state with Acquire.
        self.mapping.state().store(STATE_CLOSED, Ordering::Release);
        let layout = self.mapping.layout;
        for place in [layout.request, layout.response] {
            // SAFETY: a validated control block in the live mapping, only used via atomics.
            unsafe { self.mapping.control(place).as_ref() }.notify_consumer();
        }
    }

    /// Wakes the request ring's consumer (the worker's connection thread) if it sleeps, so
    /// that it runs its `is_closed` check again: how the worker's other threads hand that
    /// thread work (replies to flush) without closing the segment.
    ///
    /// ```
    /// use molt_ipc_ring::segment::{SegmentConfig, WorkerSide};
    /// let (worker, _file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
    /// worker.state.wake_request_consumer(); // nobody sleeps: nothing happens
    /// assert!(!worker.state.is_closed());
    /// ```
    pub fn wake_request_consumer(&self) {
        // SAFETY: a validated control block in the live mapping, only used via atomics.
        unsafe { self.mapping.control(self.mapping.layout.request).as_ref() }.notify_consumer();
    }

    /// Whether either side closed the segment (any value but ready counts as closed: the
    /// word is writable by the peer).
    ///
    /// ```
    /// use molt_ipc_ring::segment::{SegmentConfig, WorkerSide};
    /// let (worker, _file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
    /// assert!(!worker.state.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.mapping.state().load(Ordering::Acquire) != STATE_READY
    }
}

/// The worker's endpoints: it consumes requests and produces responses. Move `requests` and
/// `responses` to different threads if that suits the server; each is single-threaded.
///
/// ```
/// use molt_ipc_ring::segment::{ClientSide, SegmentConfig, WorkerSide};
/// let (mut worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
/// let mut client = ClientSide::attach(file).unwrap();
/// worker.responses.push(b"unsolicited").unwrap();
/// assert_eq!(client.responses.pop().unwrap().len(), 11);
/// ```
pub struct WorkerSide {
    /// Requests from the client.
    pub requests: Consumer,
    /// Responses to the client.
    pub responses: Producer,
    /// The shared open/closed state.
    pub state: SegmentState,
}

impl WorkerSide {
    /// Creates a sealed memfd segment laid out for `config`, with the header written and both
    /// rings empty. Returns the worker's endpoints and the file to send to the client (drop
    /// it once sent: the mapping stays).
    ///
    /// ```
    /// use molt_ipc_ring::segment::{SegmentConfig, WorkerSide};
    /// let (_worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
    /// assert!(file.metadata().unwrap().len() > 2 << 20);
    /// ```
    pub fn create(config: &SegmentConfig) -> io::Result<(Self, File)> {
        config.validate()?;
        let layout = Layout::for_config(config);
        let file = memfd::create_sealed(c"molt-segment", layout.len as u64)?;
        let mapping = Mapping::new(&file, layout.len, |_| Ok(layout)).map_err(|e| match e {
            AttachError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        let mut header = [0u8; HEADER_LEN];
        layout.write_header(&mut header);
        // SAFETY: the header lies in the fresh mapping, which no other process can see yet
        // (its descriptor has not been sent); written like every other access to the mapping.
        unsafe { header_bytes(mapping.base).write(0, &header) };
        let (_, requests) = mapping.ring(layout.request);
        let (responses, _) = mapping.ring(layout.response);
        Ok((
            Self {
                requests,
                responses,
                state: SegmentState { mapping },
            },
            file,
        ))
    }
}

/// The client's endpoints: it produces requests and consumes responses.
///
/// ```
/// use molt_ipc_ring::segment::{ClientSide, SegmentConfig, WorkerSide};
/// let (mut worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
/// let mut client = ClientSide::attach(file).unwrap();
/// client.requests.push(b"call").unwrap();
/// assert_eq!(worker.requests.pop().unwrap().len(), 4);
/// ```
pub struct ClientSide {
    /// Requests to the worker.
    pub requests: Producer,
    /// Responses from the worker.
    pub responses: Consumer,
    /// The shared open/closed state.
    pub state: SegmentState,
}

impl ClientSide {
    /// Maps a segment received from the worker after checking that it is a memfd sealed
    /// against resizing and that every header field is consistent with its size.
    ///
    /// ```
    /// use molt_ipc_ring::segment::{ClientSide, AttachError};
    /// let file = molt_ipc_ring::platform::memfd::create_sealed(c"not-a-segment", 4096).unwrap();
    /// assert!(matches!(ClientSide::attach(file), Err(AttachError::BadMagic)));
    /// ```
    pub fn attach(file: File) -> Result<Self, AttachError> {
        let len = memfd::verify_sealed(&file)?;
        let len = usize::try_from(len).map_err(|_| AttachError::BadLength)?;
        if len < HEADER_LEN {
            return Err(AttachError::BadLength);
        }
        let mapping = Mapping::new(&file, len, |header| Layout::parse(header, len))?;
        let layout = mapping.layout;
        for place in [layout.request, layout.response] {
            // SAFETY: a validated control block in the live mapping, only read atomically.
            let control = unsafe { mapping.control(place).as_ref() };
            if !control.is_fresh() {
                return Err(AttachError::NotReady);
            }
        }
        let (requests, _) = mapping.ring(layout.request);
        let (_, responses) = mapping.ring(layout.response);
        Ok(Self {
            requests,
            responses,
            state: SegmentState { mapping },
        })
    }
}
