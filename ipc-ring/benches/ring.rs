//! Rust↔Rust figures for the shared-memory transport, on a real memfd segment:
//!
//! - `round_trip/spin_Nus`: a 64-byte request and its 64-byte echo through the two rings of
//!   one segment, both sides waiting with a spin window of N µs; N = 0 means every message
//!   pays a futex wake-up (the cold path).
//! - `one_way`: records of 64 B and 1 KiB pushed by one thread and popped by another.
//! - `copy`: one thread pushes a record of 64 B, 4 KiB or 64 KiB and copies it back out:
//!   the cost of moving bytes in and out of shared memory, with no peer to wait for.
//!
//! `cargo bench -p molt-ipc-ring --bench ring`; see bench/ipc/README.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use molt_ipc_ring::ring::{Consumer, PushError};
use molt_ipc_ring::segment::{ClientSide, SegmentConfig, SegmentState, WorkerSide};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};

const HANG_GUARD_NS: u64 = 10_000_000_000;

fn segment() -> (WorkerSide, ClientSide) {
    let (worker, file) = WorkerSide::create(&SegmentConfig::default()).unwrap();
    (worker, ClientSide::attach(file).unwrap())
}

fn deadline() -> u64 {
    molt_ipc_ring::platform::clock::monotonic_now_ns() + HANG_GUARD_NS
}

/// Waits for and discards one record into `scratch`; false once the segment is closed.
fn take(
    consumer: &mut Consumer,
    config: &WaitConfig,
    state: &SegmentState,
    scratch: &mut Vec<u8>,
) -> bool {
    match consumer
        .wait(deadline(), config, || state.is_closed())
        .unwrap()
    {
        WaitOutcome::Ready => {}
        WaitOutcome::Closed => return false,
        WaitOutcome::TimedOut => panic!("no record within the hang guard"),
    }
    let record = consumer.pop().unwrap();
    scratch.clear();
    record.append_to(scratch);
    record.consume();
    true
}

fn round_trip(c: &mut Criterion, name: &str, config: WaitConfig) {
    let (mut worker, mut client) = segment();
    let echo = std::thread::spawn(move || {
        let mut scratch = Vec::new();
        while take(&mut worker.requests, &config, &worker.state, &mut scratch) {
            worker.responses.push(&scratch).unwrap();
        }
    });
    let request = [7u8; 64];
    let mut scratch = Vec::new();
    c.bench_function(name, |b| {
        b.iter(|| {
            client.requests.push(black_box(&request)).unwrap();
            assert!(take(
                &mut client.responses,
                &config,
                &client.state,
                &mut scratch
            ));
        })
    });
    client.state.close();
    echo.join().unwrap();
}

fn round_trips(c: &mut Criterion) {
    // Zero spin pays a futex wake-up per message; the others show what spinning buys when
    // the peer is (or is not) on the other core. WaitConfig::DEFAULT_SPIN comes from these.
    for spin_us in [0, 5, 20, 50, 200] {
        let config = WaitConfig {
            spin: Duration::from_micros(spin_us),
            ..WaitConfig::default()
        };
        round_trip(c, &format!("round_trip/spin_{spin_us}us"), config);
    }
}

fn one_way(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_way");
    for size in [64usize, 1024] {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.iter_custom(|iterations| {
                let (mut worker, mut client) = segment();
                let reader = std::thread::spawn(move || {
                    let config = WaitConfig::default();
                    let mut scratch = Vec::new();
                    for _ in 0..iterations {
                        assert!(take(
                            &mut worker.requests,
                            &config,
                            &worker.state,
                            &mut scratch
                        ));
                    }
                });
                let record = vec![3u8; size];
                let start = Instant::now();
                for _ in 0..iterations {
                    while client.requests.push(&record) == Err(PushError::Full) {
                        std::hint::spin_loop();
                    }
                }
                reader.join().unwrap();
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("copy");
    let (mut worker, mut client) = segment();
    for (name, size) in [("64B", 64usize), ("4KiB", 4 << 10), ("64KiB", 64 << 10)] {
        let record = vec![5u8; size];
        let mut out = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                client.requests.push(black_box(&record)).unwrap();
                let popped = worker.requests.pop().unwrap();
                assert_eq!(popped.copy_prefix(black_box(&mut out)), size);
                popped.consume();
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = round_trips, one_way, copy
}
criterion_main!(benches);
