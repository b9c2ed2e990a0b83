//! loom models of the ring and of the sleep/wake handshake. They run the crate's own code,
//! with `sync.rs` swapping in loom's atomics, a byte-by-byte tracked data area (so a read not
//! ordered after its write is reported) and a mutex/condvar futex (so a lost wake-up shows
//! as a deadlock).
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p molt-ipc-ring --release --target-dir target/loom --test loom`
//! (its own target dir: the loom cfg would otherwise rebuild everyone's dependencies).
#![cfg(loom)]

use loom::thread;
use molt_ipc_ring::ring::{self, PopError, PushError};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};
use std::time::Duration;

/// A 64-byte ring holds at most 24-byte records; these three (8 + 24, 8 + 24, 8 + 8 bytes)
/// cannot all be in it at once, so the models cover Full, wraparound and the padding record.
const RECORDS: [&[u8]; 3] = [&[1; 20], &[2; 24], &[3; 5]];

fn push_retrying(producer: &mut ring::Producer, record: &[u8]) {
    loop {
        match producer.push(record) {
            Ok(()) => return,
            Err(PushError::Full) => thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn records_arrive_whole_and_in_order() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::with_capacity(64).unwrap();
        let writer = thread::spawn(move || {
            for record in RECORDS {
                push_retrying(&mut producer, record);
            }
        });
        for expected in RECORDS {
            loop {
                match consumer.pop() {
                    Ok(record) => {
                        let mut got = Vec::new();
                        record.append_to(&mut got);
                        record.consume();
                        assert_eq!(got, expected);
                        break;
                    }
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        writer.join().unwrap();
    });
}

#[test]
fn a_sleeping_consumer_is_always_woken() {
    loom::model(|| {
        let (mut producer, mut consumer) = ring::with_capacity(64).unwrap();
        let writer = thread::spawn(move || {
            for record in &RECORDS[..2] {
                push_retrying(&mut producer, record);
            }
        });
        // No spin and no deadline: the only way out of a wait is the producer's wake-up.
        let config = WaitConfig {
            spin: Duration::ZERO,
            sleep_slice_ns: u64::MAX,
        };
        for expected in &RECORDS[..2] {
            assert_eq!(
                consumer.wait(u64::MAX, &config, || false).unwrap(),
                WaitOutcome::Ready
            );
            let record = consumer.pop().unwrap();
            let mut got = Vec::new();
            record.append_to(&mut got);
            record.consume();
            assert_eq!(&got, expected);
        }
        writer.join().unwrap();
    });
}
