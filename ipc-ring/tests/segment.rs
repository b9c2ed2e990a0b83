#![cfg(not(loom))]
//! Segments end to end: created on one side, passed over a unix socket, attached and checked
//! on the other; and what a hostile peer writing into the shared memory can (not) do.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use memmap2::MmapMut;
use molt_ipc_ring::handshake::{self, HandshakeError};
use molt_ipc_ring::platform::{clock::monotonic_now_ns, fd_passing, memfd};
use molt_ipc_ring::ring::{PopError, PushError};
use molt_ipc_ring::segment::{AttachError, ClientSide, SegmentConfig, WorkerSide};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};

const SMALL: SegmentConfig = SegmentConfig {
    request_capacity: 256,
    response_capacity: 512,
};
/// Byte offsets of the request ring, as documented in docs/protocol.md.
const REQUEST_TAIL: usize = 128 + 128;
const REQUEST_DATA: usize = 128 + 384;
/// Byte offsets of the response ring: 128 + 384 + 256 rounded up to 128.
const RESPONSE_HEAD: usize = 768;

/// A second, independent mapping of the segment: what a hostile peer sees and writes.
fn hostile_mapping(file: &File) -> MmapMut {
    // SAFETY: test-only mapping of a sealed memfd; all access below is by copying bytes.
    unsafe { MmapMut::map_mut(file).unwrap() }
}

fn put_u64(map: &mut MmapMut, at: usize, value: u64) {
    map[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn create_small() -> (WorkerSide, File) {
    WorkerSide::create(&SMALL).unwrap()
}

fn attach_copy(file: &File) -> Result<ClientSide, AttachError> {
    ClientSide::attach(file.try_clone().unwrap())
}

#[test]
fn a_segment_passed_over_a_socket_carries_requests_and_responses() {
    let (worker_end, client_end) = UnixStream::pair().unwrap();
    let client = std::thread::spawn(move || {
        let mut client = handshake::client_side(&client_end).unwrap();
        client.requests.push(b"request").unwrap();
        let config = WaitConfig::default();
        let deadline = monotonic_now_ns() + 10_000_000_000;
        assert_eq!(
            client.responses.wait(deadline, &config, || false).unwrap(),
            WaitOutcome::Ready
        );
        let mut reply = Vec::new();
        client.responses.pop().unwrap().append_to(&mut reply);
        reply
    });
    let mut worker = handshake::worker_side(&worker_end, &SMALL).unwrap();
    let deadline = monotonic_now_ns() + 10_000_000_000;
    assert_eq!(
        worker
            .requests
            .wait(deadline, &WaitConfig::default(), || false)
            .unwrap(),
        WaitOutcome::Ready
    );
    let mut request = Vec::new();
    let record = worker.requests.pop().unwrap();
    record.append_to(&mut request);
    record.consume();
    assert_eq!(request, b"request");
    worker.responses.push(b"response").unwrap();
    assert_eq!(client.join().unwrap(), b"response");
}

#[test]
fn the_segment_is_sealed_against_resizing() {
    let (_worker, file) = create_small();
    assert!(memfd::verify_sealed(&file).is_ok());
    assert!(file.set_len(8192).is_err());
    assert!(file.set_len(64).is_err());
}

#[test]
fn an_unsealed_file_is_refused() {
    let file = File::open("/proc/self/exe").unwrap();
    assert!(matches!(ClientSide::attach(file), Err(AttachError::Io(_))));
}

#[test]
fn the_segment_has_no_name_in_dev_shm() {
    let before: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let (_worker, file) = create_small();
    let after: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        after.iter().all(|p| before.contains(p)),
        "new entries in /dev/shm: {after:?}"
    );
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    assert!(
        target.to_string_lossy().starts_with("/memfd:molt-segment"),
        "{target:?}"
    );
}

/// Rewrites one header field of a fresh segment and attaches.
fn attach_with_header(at: usize, bytes: &[u8]) -> Result<ClientSide, AttachError> {
    let (_worker, file) = create_small();
    hostile_mapping(&file)[at..at + bytes.len()].copy_from_slice(bytes);
    attach_copy(&file)
}

#[test]
fn a_fresh_segment_attaches() {
    let (_worker, file) = create_small();
    assert!(attach_copy(&file).is_ok());
}

#[test]
fn attach_refuses_a_bad_magic() {
    assert!(matches!(
        attach_with_header(0, b"NOTMOLT\0"),
        Err(AttachError::BadMagic)
    ));
}

#[test]
fn attach_refuses_another_layout_version() {
    assert!(matches!(
        attach_with_header(8, &2u32.to_le_bytes()),
        Err(AttachError::BadVersion(2))
    ));
}

#[test]
fn attach_refuses_a_length_that_disagrees_with_the_file() {
    assert!(matches!(
        attach_with_header(16, &(1u64 << 40).to_le_bytes()),
        Err(AttachError::BadLength)
    ));
    assert!(matches!(
        attach_with_header(12, &64u32.to_le_bytes()),
        Err(AttachError::BadLength)
    ));
}

#[test]
fn attach_refuses_a_closed_segment() {
    assert!(matches!(
        attach_with_header(28, &2u32.to_le_bytes()),
        Err(AttachError::NotReady)
    ));
}

#[test]
fn attach_refuses_impossible_rings() {
    let cases: [(usize, u64); 7] = [
        (40, 100),     // capacity not a power of two
        (40, 32),      // capacity below the minimum
        (40, 1 << 40), // capacity beyond the segment and the maximum
        (32, 200),     // offset misaligned
        (32, 0),       // offset inside the header
        (48, 1 << 20), // response ring beyond the segment
        (48, 128),     // response ring overlapping the request ring
    ];
    for (at, value) in cases {
        let result = attach_with_header(at, &value.to_le_bytes());
        assert!(
            matches!(result, Err(AttachError::BadRing(_))),
            "field {at} = {value}: {:?}",
            result.err()
        );
    }
}

#[test]
fn attach_refuses_rings_already_in_use() {
    assert!(matches!(
        attach_with_header(REQUEST_TAIL, &8u64.to_le_bytes()),
        Err(AttachError::NotReady)
    ));
}

#[test]
fn attach_refuses_a_file_shorter_than_a_header() {
    let file = memfd::create_sealed(c"tiny", 16).unwrap();
    assert!(matches!(
        ClientSide::attach(file),
        Err(AttachError::BadLength)
    ));
}

/// The worker's view of a request ring that a hostile client has scribbled on.
fn worker_pop_after(scribble: impl FnOnce(&mut MmapMut)) -> Result<Vec<u8>, PopError> {
    let (mut worker, file) = create_small();
    let mut client = attach_copy(&file).unwrap();
    client.requests.push(b"honest").unwrap();
    scribble(&mut hostile_mapping(&file));
    let record = worker.requests.pop()?;
    let mut out = Vec::new();
    record.append_to(&mut out);
    Ok(out)
}

fn is_corrupt<T: std::fmt::Debug>(result: Result<T, PopError>) -> bool {
    matches!(result, Err(PopError::Corrupt(_)))
}

#[test]
fn an_honest_request_reads_back() {
    assert_eq!(worker_pop_after(|_| {}).unwrap(), b"honest");
}

#[test]
fn a_tail_beyond_the_capacity_is_corrupt() {
    assert!(is_corrupt(worker_pop_after(|m| put_u64(
        m,
        REQUEST_TAIL,
        4096
    ))));
}

#[test]
fn a_misaligned_tail_is_corrupt() {
    assert!(is_corrupt(worker_pop_after(|m| put_u64(
        m,
        REQUEST_TAIL,
        12
    ))));
}

#[test]
fn a_tail_behind_the_head_is_corrupt() {
    assert!(is_corrupt(worker_pop_after(|m| put_u64(
        m,
        REQUEST_TAIL,
        u64::MAX - 7
    ))));
}

#[test]
fn a_record_length_beyond_the_published_data_is_corrupt() {
    assert!(is_corrupt(worker_pop_after(|m| m
        [REQUEST_DATA..REQUEST_DATA + 4]
        .copy_from_slice(&100u32.to_le_bytes()))));
}

#[test]
fn a_record_length_beyond_the_capacity_is_corrupt() {
    assert!(is_corrupt(worker_pop_after(|m| {
        put_u64(m, REQUEST_TAIL, 256);
        m[REQUEST_DATA..REQUEST_DATA + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    })));
}

#[test]
fn an_unknown_record_kind_is_corrupt() {
    assert!(is_corrupt(worker_pop_after(|m| m
        [REQUEST_DATA + 4..REQUEST_DATA + 8]
        .copy_from_slice(&9u32.to_le_bytes()))));
}

#[test]
fn padding_at_the_start_of_the_area_is_corrupt() {
    assert!(is_corrupt(worker_pop_after(|m| m
        [REQUEST_DATA + 4..REQUEST_DATA + 8]
        .copy_from_slice(&2u32.to_le_bytes()))));
}

#[test]
fn a_garbage_consumer_index_makes_the_producer_report_corrupt() {
    let (mut worker, file) = create_small();
    let _client = attach_copy(&file).unwrap();
    let mut map = hostile_mapping(&file);
    put_u64(&mut map, RESPONSE_HEAD, 1 << 30);
    let mut result = Ok(());
    // Fill the ring until the producer has to look at the consumer's index.
    for _ in 0..100 {
        result = worker.responses.push(&[7; 100]);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(PushError::Corrupt(_))), "{result:?}");
}

#[test]
fn a_request_ring_flooded_with_garbage_never_panics_nor_hangs() {
    // Every 8-byte value in the tail and in the first record header, from a small set of
    // interesting ones: each pop returns something (or an error) at once.
    let values = [
        0u64,
        8,
        16,
        24,
        255,
        256,
        264,
        4096,
        u64::MAX,
        u64::MAX - 7,
        1 << 32,
        (2 << 32) | 16,
    ];
    for tail in values {
        for header in values {
            let result = worker_pop_after(|m| {
                put_u64(m, REQUEST_TAIL, tail);
                put_u64(m, REQUEST_DATA, header);
            });
            if let Ok(bytes) = result {
                assert!(bytes.len() <= 120);
            }
        }
    }
}

#[test]
fn closing_wakes_a_consumer_sleeping_on_the_other_side() {
    let (worker, file) = create_small();
    let mut client = attach_copy(&file).unwrap();
    let waiter = std::thread::spawn(move || {
        let config = WaitConfig {
            spin: Duration::ZERO,
            sleep_slice_ns: 60_000_000_000,
        };
        let state = &client.state;
        client
            .responses
            .wait(u64::MAX, &config, || state.is_closed())
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(20));
    worker.state.close();
    assert_eq!(waiter.join().unwrap(), WaitOutcome::Closed);
}

#[test]
fn a_handshake_without_a_descriptor_is_refused() {
    let (worker_end, client_end) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &worker_end, &handshake::HELLO).unwrap();
    assert!(matches!(
        handshake::client_side(&client_end),
        Err(HandshakeError::BadHello)
    ));
}

#[test]
fn a_handshake_with_the_wrong_message_is_refused() {
    let (worker_end, client_end) = UnixStream::pair().unwrap();
    let (_worker, file) = create_small();
    fd_passing::send_with_fd(&worker_end, b"MOLTSHM\x09", file.as_fd()).unwrap();
    assert!(matches!(
        handshake::client_side(&client_end),
        Err(HandshakeError::BadHello)
    ));
}

#[test]
fn a_handshake_carrying_a_non_segment_is_refused() {
    let (worker_end, client_end) = UnixStream::pair().unwrap();
    let file = File::open("/proc/self/exe").unwrap();
    fd_passing::send_with_fd(&worker_end, &handshake::HELLO, file.as_fd()).unwrap();
    assert!(matches!(
        handshake::client_side(&client_end),
        Err(HandshakeError::Attach(AttachError::Io(_)))
    ));
}

#[test]
fn a_push_from_another_process_wakes_a_sleeping_consumer() {
    let (worker, file) = create_small();
    let mut client = attach_copy(&file).unwrap();
    drop(file);
    // SAFETY: the child only sleeps, pushes into the mapped ring (no allocation, no locks)
    // and calls _exit, all async-signal-safe enough for a forked copy of a threaded process.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let mut responses = worker.responses;
        std::thread::sleep(Duration::from_millis(30));
        let code = if responses.push(b"from the child").is_ok() {
            0
        } else {
            1
        };
        // SAFETY: ends the forked child without running the parent's destructors or atexit.
        unsafe { libc::_exit(code) };
    }
    let config = WaitConfig {
        spin: Duration::ZERO,
        sleep_slice_ns: 60_000_000_000,
    };
    let deadline = monotonic_now_ns() + 10_000_000_000;
    let outcome = client.responses.wait(deadline, &config, || false).unwrap();
    let mut status = 0;
    // SAFETY: waits for the child we forked; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert_eq!(outcome, WaitOutcome::Ready);
    let mut got = Vec::new();
    client.responses.pop().unwrap().append_to(&mut got);
    assert_eq!(got, b"from the child");
    assert_eq!(status, 0);
}
