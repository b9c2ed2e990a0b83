//! The C ABI against an in-process worker side: the same calls Python makes through cffi.

use std::ffi::CString;
use std::os::unix::net::UnixListener;
use std::ptr;
use std::time::Duration;

use molt_accel_native::*;
use molt_ipc_ring::handshake;
use molt_ipc_ring::platform::clock::monotonic_now_ns;
use molt_ipc_ring::segment::{SegmentConfig, WorkerSide};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};

/// A worker that accepts one connection and hands its side of the segment and the socket to
/// `serve`.
fn with_worker(
    serve: impl FnOnce(WorkerSide, std::os::unix::net::UnixStream) + Send + 'static,
) -> (tempdir::Dir, CString) {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("w.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let segment = handshake::worker_side(
            &stream,
            &SegmentConfig {
                request_capacity: 4096,
                response_capacity: 4096,
            },
        )
        .unwrap();
        serve(segment, stream);
    });
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    (dir, c_path)
}

mod tempdir {
    /// A private directory removed on drop.
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("molt-abi-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Self { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn connect(path: &CString) -> *mut MoltShm {
    let mut handle = ptr::null_mut();
    // SAFETY: valid C string and out-pointer.
    assert_eq!(
        unsafe { molt_shm_connect(path.as_ptr(), 2000, &mut handle) },
        MOLT_SHM_OK
    );
    handle
}

fn recv(handle: *mut MoltShm, buf: &mut [u8], timeout: Duration) -> (i32, usize) {
    let mut len = 0;
    let deadline = monotonic_now_ns() + timeout.as_nanos() as u64;
    // SAFETY: live handle, buffer and out-pointer.
    let status = unsafe {
        molt_shm_recv(
            handle,
            buf.as_mut_ptr(),
            buf.len(),
            &mut len,
            deadline,
            20_000,
        )
    };
    (status, len)
}

fn echo(mut segment: WorkerSide, _stream: std::os::unix::net::UnixStream) {
    let config = WaitConfig::default();
    let mut buf = Vec::new();
    while let Ok(WaitOutcome::Ready) = segment
        .requests
        .wait(u64::MAX, &config, || segment.state.is_closed())
    {
        buf.clear();
        let record = segment.requests.pop().unwrap();
        record.append_to(&mut buf);
        record.consume();
        segment.responses.push(&buf).unwrap();
    }
}

#[test]
fn a_frame_sent_comes_back_from_an_echoing_worker() {
    let (_dir, path) = with_worker(echo);
    let handle = connect(&path);
    // SAFETY: live handle and valid buffer.
    assert_eq!(
        unsafe { molt_shm_send(handle, b"hello".as_ptr(), 5) },
        MOLT_SHM_OK
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        recv(handle, &mut buf, Duration::from_secs(10)),
        (MOLT_SHM_OK, 5)
    );
    assert_eq!(&buf[..5], b"hello");
    // SAFETY: live handle, not used afterwards.
    unsafe { molt_shm_close(handle) };
}

#[test]
fn a_buffer_too_small_reports_the_length_and_keeps_the_frame() {
    let (_dir, path) = with_worker(echo);
    let handle = connect(&path);
    // SAFETY: live handle and valid buffer.
    assert_eq!(
        unsafe { molt_shm_send(handle, [9u8; 100].as_ptr(), 100) },
        MOLT_SHM_OK
    );
    let mut small = [0u8; 10];
    assert_eq!(
        recv(handle, &mut small, Duration::from_secs(10)),
        (MOLT_SHM_TOO_SMALL, 100)
    );
    let mut big = [0u8; 100];
    assert_eq!(
        recv(handle, &mut big, Duration::from_secs(10)),
        (MOLT_SHM_OK, 100)
    );
    assert_eq!(big, [9u8; 100]);
    // SAFETY: live handle, not used afterwards.
    unsafe { molt_shm_close(handle) };
}

fn try_recv(handle: *mut MoltShm, buf: &mut [u8]) -> (i32, usize) {
    let mut len = 0;
    // SAFETY: live handle, buffer and out-pointer.
    let status = unsafe { molt_shm_try_recv(handle, buf.as_mut_ptr(), buf.len(), &mut len) };
    (status, len)
}

#[test]
fn try_recv_takes_what_is_queued_and_never_waits() {
    let (push, pushes) = std::sync::mpsc::channel::<&'static [u8]>();
    let (pushed, done) = std::sync::mpsc::channel::<()>();
    let (_dir, path) = with_worker(move |mut segment, _stream| {
        for frame in pushes {
            segment.responses.push(frame).unwrap();
            pushed.send(()).unwrap();
        }
    });
    let handle = connect(&path);
    let mut buf = [0u8; 8];
    assert_eq!(try_recv(handle, &mut buf).0, MOLT_SHM_EMPTY);
    push.send(b"one").unwrap();
    done.recv().unwrap();
    push.send(b"a longer one").unwrap();
    done.recv().unwrap();
    assert_eq!(try_recv(handle, &mut buf), (MOLT_SHM_OK, 3));
    assert_eq!(&buf[..3], b"one");
    // Too long for the buffer: the length is reported and the frame stays queued.
    assert_eq!(try_recv(handle, &mut buf), (MOLT_SHM_TOO_SMALL, 12));
    let mut big = [0u8; 16];
    assert_eq!(try_recv(handle, &mut big), (MOLT_SHM_OK, 12));
    assert_eq!(&big[..12], b"a longer one");
    assert_eq!(try_recv(handle, &mut big).0, MOLT_SHM_EMPTY);
    // SAFETY: live handle, not used afterwards.
    unsafe { molt_shm_close(handle) };
}

#[test]
fn a_silent_worker_gives_a_timeout() {
    let (_dir, path) = with_worker(|segment, stream| {
        std::thread::sleep(Duration::from_millis(500));
        drop((segment, stream));
    });
    let handle = connect(&path);
    let mut buf = [0u8; 16];
    assert_eq!(
        recv(handle, &mut buf, Duration::from_millis(20)).0,
        MOLT_SHM_TIMEOUT
    );
    // SAFETY: live handle, not used afterwards.
    unsafe { molt_shm_close(handle) };
}

#[test]
fn a_worker_that_goes_away_is_noticed_while_waiting() {
    let (_dir, path) = with_worker(|segment, stream| {
        std::thread::sleep(Duration::from_millis(30));
        // Not closing the segment: like a killed process, only the socket goes.
        std::mem::forget(segment);
        drop(stream);
    });
    let handle = connect(&path);
    let mut buf = [0u8; 16];
    assert_eq!(
        recv(handle, &mut buf, Duration::from_secs(10)).0,
        MOLT_SHM_CLOSED
    );
    // SAFETY: live handle.
    assert_eq!(unsafe { molt_shm_check(handle) }, MOLT_SHM_CLOSED);
    // SAFETY: live handle, not used afterwards.
    unsafe { molt_shm_close(handle) };
}

#[test]
fn a_full_request_ring_reports_full_and_an_oversized_frame_too_large() {
    let (_dir, path) = with_worker(|segment, stream| {
        std::thread::sleep(Duration::from_millis(300));
        drop((segment, stream));
    });
    let handle = connect(&path);
    // SAFETY: live handle.
    let max = unsafe { molt_shm_max_frame_len(handle) };
    assert_eq!(max, 2040);
    let frame = vec![1u8; max];
    // SAFETY: live handle and valid buffers.
    unsafe {
        assert_eq!(
            molt_shm_send(handle, frame.as_ptr(), max + 1),
            MOLT_SHM_TOO_LARGE
        );
        // Two records of the maximum length fill the 4096-byte ring exactly.
        assert_eq!(molt_shm_send(handle, frame.as_ptr(), max), MOLT_SHM_OK);
        assert_eq!(molt_shm_send(handle, frame.as_ptr(), max), MOLT_SHM_OK);
        assert_eq!(molt_shm_send(handle, frame.as_ptr(), 1), MOLT_SHM_FULL);
        molt_shm_close(handle);
    }
}

#[test]
fn closing_the_handle_tells_the_worker() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (_dir, path) = with_worker(move |mut segment, _stream| {
        let config = WaitConfig {
            spin: Duration::ZERO,
            sleep_slice_ns: 60_000_000_000,
        };
        let outcome = segment
            .requests
            .wait(u64::MAX, &config, || segment.state.is_closed())
            .unwrap();
        done_tx.send(outcome).unwrap();
    });
    let handle = connect(&path);
    // SAFETY: live handle, not used afterwards.
    unsafe { molt_shm_close(handle) };
    assert_eq!(
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        WaitOutcome::Closed
    );
}

#[test]
fn null_arguments_are_refused() {
    let mut len = 0;
    // SAFETY: null handles and pointers are documented as refused.
    unsafe {
        assert_eq!(
            molt_shm_send(ptr::null_mut(), b"x".as_ptr(), 1),
            MOLT_SHM_INVALID_ARGUMENT
        );
        assert_eq!(
            molt_shm_recv(ptr::null_mut(), ptr::null_mut(), 0, &mut len, 0, 0),
            MOLT_SHM_INVALID_ARGUMENT
        );
        assert_eq!(
            molt_shm_connect(ptr::null(), 0, ptr::null_mut()),
            MOLT_SHM_INVALID_ARGUMENT
        );
        assert_eq!(
            molt_shm_try_recv(ptr::null_mut(), ptr::null_mut(), 0, &mut len),
            MOLT_SHM_INVALID_ARGUMENT
        );
        assert_eq!(molt_shm_check(ptr::null()), MOLT_SHM_INVALID_ARGUMENT);
        molt_shm_close(ptr::null_mut());
        molt_shm_forget(ptr::null_mut());
    }
}

/// Entries of `/proc/self/fd` and mappings of molt segments in `/proc/self/maps`.
fn descriptors_and_segment_mappings() -> (usize, usize) {
    let descriptors = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mappings = maps
        .lines()
        .filter(|line| line.contains("molt-segment"))
        .count();
    (descriptors, mappings)
}

#[test]
fn a_forked_child_forgets_its_copy_and_the_parent_keeps_its_connection() {
    let (_dir, path) = with_worker(echo);
    let handle = connect(&path);
    // SAFETY: the child only counts its descriptors and mappings, forgets the handle, counts
    // again and exits without running anything the parent's other threads could hold a lock of
    // (glibc makes malloc usable in a forked child).
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let before = descriptors_and_segment_mappings();
        // SAFETY: the handle was live in the parent at the fork; nothing else uses it here.
        unsafe { molt_shm_forget(handle) };
        let after = descriptors_and_segment_mappings();
        // One socket descriptor closed and one segment unmapped, nothing else.
        let released = after == (before.0 - 1, before.1 - 1);
        // SAFETY: ends the child at once, without the parent's atexit handlers or test harness.
        unsafe { libc::_exit(if released { 0 } else { 1 }) };
    }
    let mut wait_status = 0;
    // SAFETY: waits for our own child; `wait_status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(child, &mut wait_status, 0) }, child);
    assert!(
        libc::WIFEXITED(wait_status) && libc::WEXITSTATUS(wait_status) == 0,
        "the child did not release exactly its socket and its mapping: {wait_status:#x}"
    );
    // SAFETY: live handle and valid buffers.
    unsafe {
        assert_eq!(molt_shm_check(handle), MOLT_SHM_OK);
        assert_eq!(
            molt_shm_send(handle, b"still here".as_ptr(), 10),
            MOLT_SHM_OK
        );
    }
    let mut buf = [0u8; 64];
    assert_eq!(
        recv(handle, &mut buf, Duration::from_secs(10)),
        (MOLT_SHM_OK, 10)
    );
    assert_eq!(&buf[..10], b"still here");
    // SAFETY: live handle, not used afterwards.
    unsafe { molt_shm_close(handle) };
}
