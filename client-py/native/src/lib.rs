//! C ABI over `molt-ipc-ring` for the Python client: connect to a worker's control socket,
//! send a frame into the request ring, wait for a frame from the response ring with a
//! deadline, close; and, in a forked child, forget a handle inherited from the parent without
//! disturbing the parent's connection ([`molt_shm_forget`]).
//!
//! maturin builds this crate with `bindings = "cffi"`: it runs cbindgen on it to produce the
//! C declarations, and `molt_accel._native` exposes them as cffi's `ffi` and `lib`. cffi
//! releases the GIL for the duration of every call, so a thread waiting in
//! [`molt_shm_recv`] does not hold up other Python threads.
//!
//! Every function returns a status: `MOLT_SHM_OK` (0) or one of the negative `MOLT_SHM_*`
//! codes below. No function panics across the boundary or blocks without a bound.
//!
//! Threads: [`molt_shm_send`] and [`molt_shm_recv`] may run at the same time on one handle
//! (the rings are separate); two overlapping `recv` calls on one handle are refused with
//! `MOLT_SHM_IN_USE` (the response ring has one consumer), and overlapping `send`s take turns.
//!
//! ```
//! use molt_accel_native::*;
//! // A handle is only ever made by molt_shm_connect; a path that does not exist fails cleanly.
//! let mut handle: *mut MoltShm = std::ptr::null_mut();
//! let status = unsafe { molt_shm_connect(c"/nonexistent/molt.sock".as_ptr(), 100, &mut handle) };
//! assert_eq!(status, MOLT_SHM_CONNECT_FAILED);
//! assert!(handle.is_null());
//! ```
#![deny(missing_docs)]

use std::ffi::{c_char, CStr};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use molt_ipc_ring::handshake::{self, HandshakeError};
use molt_ipc_ring::lock::Mutex;
use molt_ipc_ring::platform::peer::peer_hung_up;
use molt_ipc_ring::ring::{Consumer, PopError, Producer, PushError, Record};
use molt_ipc_ring::segment::SegmentState;
use molt_ipc_ring::wait::{WaitConfig, WaitError, WaitOutcome};

/// Success.
pub const MOLT_SHM_OK: i32 = 0;
/// `send`: the request ring has no room for this frame now (report Busy, or retry later).
pub const MOLT_SHM_FULL: i32 = -1;
/// The worker closed the segment or its end of the socket (it exited or was killed).
pub const MOLT_SHM_CLOSED: i32 = -2;
/// `recv`: the deadline passed with no frame.
pub const MOLT_SHM_TIMEOUT: i32 = -3;
/// The shared memory holds values no honest worker writes: close the handle.
pub const MOLT_SHM_CORRUPT: i32 = -4;
/// `recv`: the next frame is longer than the buffer; `*out_len` holds its length and the
/// frame stays queued for a call with a larger buffer.
pub const MOLT_SHM_TOO_SMALL: i32 = -5;
/// `send`: the frame is longer than the ring accepts (see [`molt_shm_max_frame_len`]).
pub const MOLT_SHM_TOO_LARGE: i32 = -6;
/// A null pointer or a non-UTF-8 path where one is required.
pub const MOLT_SHM_INVALID_ARGUMENT: i32 = -7;
/// `connect`: the socket could not be reached, or the worker did not answer in time.
pub const MOLT_SHM_CONNECT_FAILED: i32 = -8;
/// `connect`: the worker runs as another user, or sent no valid segment.
pub const MOLT_SHM_HANDSHAKE_FAILED: i32 = -9;
/// `recv`: another thread is already receiving on this handle.
pub const MOLT_SHM_IN_USE: i32 = -10;
/// An unexpected internal failure (a bug); the handle should be closed.
pub const MOLT_SHM_INTERNAL: i32 = -11;
/// `try_recv`: no frame is queued now.
pub const MOLT_SHM_EMPTY: i32 = -12;

/// A connection to a worker: the control socket (kept open as the liveness channel) and the
/// client's ends of the segment's two rings. Opaque to C.
///
/// ```
/// // Only molt_shm_connect makes one; every function refuses a null handle.
/// let null: *mut molt_accel_native::MoltShm = std::ptr::null_mut();
/// assert_eq!(unsafe { molt_accel_native::molt_shm_check(null) }, molt_accel_native::MOLT_SHM_INVALID_ARGUMENT);
/// ```
pub struct MoltShm {
    stream: UnixStream,
    requests: Mutex<Producer>,
    responses: Mutex<Consumer>,
    max_frame_len: usize,
    state: SegmentState,
}

impl MoltShm {
    /// Whether the worker is gone: it closed the segment, or the kernel closed its socket.
    fn worker_gone(&self) -> bool {
        self.state.is_closed() || peer_hung_up(&self.stream).unwrap_or(true)
    }
}

/// Runs `body`, turning a panic (a bug) into `MOLT_SHM_INTERNAL` instead of unwinding into C.
fn guarded(body: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(MOLT_SHM_INTERNAL)
}

/// Connects to the worker's control socket at `socket_path`, receives its segment, checks
/// it (seals, header, the worker's uid) and maps it. On success stores a new handle in
/// `*out` (free it with [`molt_shm_close`]); on failure leaves `*out` untouched.
///
/// `timeout_ms` bounds the whole handshake, connect included (0: the default of 5 s).
///
/// # Safety
/// `socket_path` must be a NUL-terminated string and `out` a valid pointer to write a handle
/// pointer to.
#[no_mangle]
pub unsafe extern "C" fn molt_shm_connect(
    socket_path: *const c_char,
    timeout_ms: u32,
    out: *mut *mut MoltShm,
) -> i32 {
    if socket_path.is_null() || out.is_null() {
        return MOLT_SHM_INVALID_ARGUMENT;
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let Ok(path) = unsafe { CStr::from_ptr(socket_path) }.to_str() else {
        return MOLT_SHM_INVALID_ARGUMENT;
    };
    guarded(|| {
        let timeout = Duration::from_millis(if timeout_ms == 0 {
            5_000
        } else {
            u64::from(timeout_ms)
        });
        let (stream, client) = match handshake::connect(Path::new(path), timeout) {
            Ok(connected) => connected,
            Err(HandshakeError::Io(_) | HandshakeError::PeerClosed) => {
                return MOLT_SHM_CONNECT_FAILED
            }
            Err(_) => return MOLT_SHM_HANDSHAKE_FAILED,
        };
        let handle = Box::new(MoltShm {
            stream,
            max_frame_len: client.requests.max_record_len(),
            requests: Mutex::new(client.requests),
            responses: Mutex::new(client.responses),
            state: client.state,
        });
        // SAFETY: `out` is valid for a write by the caller's contract.
        unsafe { *out = Box::into_raw(handle) };
        MOLT_SHM_OK
    })
}

/// The longest frame [`molt_shm_send`] accepts on this handle, in bytes (0 for a null handle).
///
/// # Safety
/// `handle` must be null or a live handle from [`molt_shm_connect`].
///
/// ```
/// assert_eq!(unsafe { molt_accel_native::molt_shm_max_frame_len(std::ptr::null()) }, 0);
/// ```
#[no_mangle]
pub unsafe extern "C" fn molt_shm_max_frame_len(handle: *const MoltShm) -> usize {
    // SAFETY: null or live, by the caller's contract.
    unsafe { handle.as_ref() }.map_or(0, |h| h.max_frame_len)
}

/// Appends one frame (`len` bytes at `frame`) to the request ring and wakes the worker if it
/// sleeps. Never blocks: a full ring returns `MOLT_SHM_FULL`.
///
/// # Safety
/// `handle` must be a live handle; `frame` must be valid for reads of `len` bytes.
///
/// ```
/// use molt_accel_native::*;
/// let status = unsafe { molt_shm_send(std::ptr::null_mut(), b"x".as_ptr(), 1) };
/// assert_eq!(status, MOLT_SHM_INVALID_ARGUMENT);
/// ```
#[no_mangle]
pub unsafe extern "C" fn molt_shm_send(handle: *mut MoltShm, frame: *const u8, len: usize) -> i32 {
    // SAFETY: null or live, by the caller's contract; shared use is synchronized inside.
    let Some(shm) = (unsafe { handle.as_ref() }) else {
        return MOLT_SHM_INVALID_ARGUMENT;
    };
    if frame.is_null() {
        return MOLT_SHM_INVALID_ARGUMENT;
    }
    // SAFETY: valid for `len` bytes by the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(frame, len) };
    guarded(|| {
        if shm.state.is_closed() {
            return MOLT_SHM_CLOSED;
        }
        let pushed = shm.requests.lock().push(bytes);
        // The lock is released here: the liveness check below is a poll(2), and another
        // thread's send need not wait for it.
        match pushed {
            Ok(()) => MOLT_SHM_OK,
            Err(PushError::Full) if shm.worker_gone() => MOLT_SHM_CLOSED,
            Err(PushError::Full) => MOLT_SHM_FULL,
            Err(PushError::TooLarge { .. }) => MOLT_SHM_TOO_LARGE,
            Err(PushError::Corrupt(_)) => MOLT_SHM_CORRUPT,
        }
    })
}

/// Takes the next frame from the response ring into `buf` (capacity `cap`), storing its
/// length in `*out_len`. Waits until `deadline_ns` (absolute `CLOCK_MONOTONIC` nanoseconds,
/// the clock of Python's `time.monotonic_ns()`; `UINT64_MAX` for none): spinning for up to
/// `spin_ns` (at most 10 ms, `WaitConfig::MAX_SPIN`), then sleeping on the ring's futex in
/// slices of a few milliseconds, checking in between whether the worker is gone
/// (`MOLT_SHM_CLOSED`).
///
/// # Safety
/// `handle` must be a live handle; `buf` valid for writes of `cap` bytes; `out_len` valid
/// for a write.
///
/// ```
/// use molt_accel_native::*;
/// let (mut buf, mut len) = ([0u8; 8], 0usize);
/// let status = unsafe { molt_shm_recv(std::ptr::null_mut(), buf.as_mut_ptr(), 8, &mut len, u64::MAX, 0) };
/// assert_eq!(status, MOLT_SHM_INVALID_ARGUMENT);
/// ```
#[no_mangle]
pub unsafe extern "C" fn molt_shm_recv(
    handle: *mut MoltShm,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    deadline_ns: u64,
    spin_ns: u64,
) -> i32 {
    // SAFETY: null or live, by the caller's contract.
    let Some(shm) = (unsafe { handle.as_ref() }) else {
        return MOLT_SHM_INVALID_ARGUMENT;
    };
    if buf.is_null() || out_len.is_null() {
        return MOLT_SHM_INVALID_ARGUMENT;
    }
    // SAFETY: valid for writes of `cap` bytes by the caller's contract, and not aliased by
    // anything Rust holds.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
    guarded(|| {
        let Some(mut responses) = shm.responses.try_lock() else {
            return MOLT_SHM_IN_USE;
        };
        let config = WaitConfig {
            spin: Duration::from_nanos(spin_ns),
            ..WaitConfig::default()
        };
        match responses.wait(deadline_ns, &config, || shm.worker_gone()) {
            Ok(WaitOutcome::Ready) => {}
            Ok(WaitOutcome::TimedOut) => return MOLT_SHM_TIMEOUT,
            Ok(WaitOutcome::Closed) => return MOLT_SHM_CLOSED,
            Err(WaitError::Corrupt(_)) => return MOLT_SHM_CORRUPT,
            Err(WaitError::Futex(_)) => return MOLT_SHM_INTERNAL,
        }
        let record = match responses.pop() {
            Ok(record) => record,
            Err(PopError::Corrupt(_)) => return MOLT_SHM_CORRUPT,
            // wait said Ready, and only this thread consumes.
            Err(PopError::Empty) => return MOLT_SHM_INTERNAL,
        };
        // SAFETY: `out_len` is valid for a write by the caller's contract.
        unsafe { deliver(record, buf, out_len) }
    })
}

/// Takes the next frame from the response ring into `buf` (capacity `cap`) if one is queued
/// already, storing its length in `*out_len`; never waits, never makes a system call. Returns
/// `MOLT_SHM_EMPTY` when nothing is queued, `MOLT_SHM_IN_USE` when another thread is
/// receiving on this handle (that thread gets the frame), and `MOLT_SHM_TOO_SMALL` as
/// [`molt_shm_recv`] does. Whether the worker is gone is not checked: a waiting
/// [`molt_shm_recv`] notices it.
///
/// An event loop calls it after sending, so that a reply already in the ring is taken on the
/// loop's own thread, without waking a reader thread to hand it over.
///
/// # Safety
/// As for [`molt_shm_recv`].
///
/// ```
/// use molt_accel_native::*;
/// let (mut buf, mut len) = ([0u8; 8], 0usize);
/// let status = unsafe { molt_shm_try_recv(std::ptr::null_mut(), buf.as_mut_ptr(), 8, &mut len) };
/// assert_eq!(status, MOLT_SHM_INVALID_ARGUMENT);
/// ```
#[no_mangle]
pub unsafe extern "C" fn molt_shm_try_recv(
    handle: *mut MoltShm,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: null or live, by the caller's contract.
    let Some(shm) = (unsafe { handle.as_ref() }) else {
        return MOLT_SHM_INVALID_ARGUMENT;
    };
    if buf.is_null() || out_len.is_null() {
        return MOLT_SHM_INVALID_ARGUMENT;
    }
    // SAFETY: valid for writes of `cap` bytes by the caller's contract, and not aliased by
    // anything Rust holds.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
    guarded(|| {
        let Some(mut responses) = shm.responses.try_lock() else {
            return MOLT_SHM_IN_USE;
        };
        let record = match responses.pop() {
            Ok(record) => record,
            Err(PopError::Empty) => return MOLT_SHM_EMPTY,
            Err(PopError::Corrupt(_)) => return MOLT_SHM_CORRUPT,
        };
        // SAFETY: `out_len` is valid for a write by the caller's contract.
        unsafe { deliver(record, buf, out_len) }
    })
}

/// Stores `record`'s length in `*out_len` and, if it fits in `buf`, copies it there and
/// consumes it (`MOLT_SHM_OK`); a record too long stays queued (`MOLT_SHM_TOO_SMALL`), for a
/// retry with a larger buffer. The one reply path of [`molt_shm_recv`] and
/// [`molt_shm_try_recv`].
///
/// # Safety
/// `out_len` must be valid for a write.
unsafe fn deliver(record: Record<'_>, buf: &mut [u8], out_len: *mut usize) -> i32 {
    // SAFETY: by this function's contract.
    unsafe { *out_len = record.len() };
    if record.len() > buf.len() {
        return MOLT_SHM_TOO_SMALL;
    }
    record.copy_prefix(buf);
    record.consume();
    MOLT_SHM_OK
}

/// `MOLT_SHM_OK` while the worker is alive, `MOLT_SHM_CLOSED` once it is gone. Cheap (one
/// `poll` with a zero timeout): suitable before reusing a pooled connection.
///
/// # Safety
/// `handle` must be null or a live handle.
///
/// ```
/// use molt_accel_native::*;
/// assert_eq!(unsafe { molt_shm_check(std::ptr::null()) }, MOLT_SHM_INVALID_ARGUMENT);
/// ```
#[no_mangle]
pub unsafe extern "C" fn molt_shm_check(handle: *const MoltShm) -> i32 {
    // SAFETY: null or live, by the caller's contract.
    match unsafe { handle.as_ref() } {
        None => MOLT_SHM_INVALID_ARGUMENT,
        Some(shm) if shm.worker_gone() => MOLT_SHM_CLOSED,
        Some(_) => MOLT_SHM_OK,
    }
}

/// Marks the segment closed (so the worker drops this connection at once), closes the socket,
/// unmaps the segment and frees the handle. Null is ignored.
///
/// # Safety
/// `handle` must be null or a live handle, not used by any thread during or after this call.
///
/// ```
/// unsafe { molt_accel_native::molt_shm_close(std::ptr::null_mut()) }; // a no-op
/// ```
#[no_mangle]
pub unsafe extern "C" fn molt_shm_close(handle: *mut MoltShm) {
    if handle.is_null() {
        return;
    }
    // SAFETY: a live handle from Box::into_raw in molt_shm_connect, now exclusively ours.
    let shm = unsafe { Box::from_raw(handle) };
    shm.state.close();
}

/// Releases this process's copy of a handle inherited through `fork()`: closes the copy of
/// the socket descriptor, unmaps the segment and frees the handle, without marking the
/// segment closed or touching anything else in shared memory, so the process that made the
/// connection keeps using it undisturbed. The worker keeps serving the connection for as long
/// as the original process holds its own socket descriptor. Null is ignored.
///
/// Call it in the child, for each handle the parent had, instead of [`molt_shm_close`] (which
/// would end the parent's connection). It takes neither of the handle's locks: a thread of
/// the parent may have held one at the moment of the fork, and that thread does not exist in
/// the child.
///
/// # Safety
/// `handle` must be null or a handle that was live in the parent when this process was
/// forked, not used by any thread of this process during or after this call.
///
/// ```
/// unsafe { molt_accel_native::molt_shm_forget(std::ptr::null_mut()) }; // a no-op
/// ```
#[no_mangle]
pub unsafe extern "C" fn molt_shm_forget(handle: *mut MoltShm) {
    if handle.is_null() {
        return;
    }
    // SAFETY: this process's copy of a handle made by Box::into_raw in molt_shm_connect,
    // exclusively ours by the caller's contract. Dropping it closes our descriptor and unmaps
    // our mapping only; dropping a Mutex does not lock it, and dropping the ring endpoints
    // writes nothing to the shared memory.
    drop(unsafe { Box::from_raw(handle) });
}
