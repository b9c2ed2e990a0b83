#![cfg(not(loom))]
//! Behaviour of the SPSC byte ring through its public API, on heap-backed rings (these also
//! run under Miri: `cargo +nightly miri test -p molt-ipc-ring --test ring`).

use std::collections::VecDeque;
use std::time::Duration;

use molt_ipc_ring::frame::{Codec, Frame};
use molt_ipc_ring::platform::clock::monotonic_now_ns;
use molt_ipc_ring::ring::{self, max_record_len, PopError, PushError};
use molt_ipc_ring::wait::{WaitConfig, WaitOutcome};

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31) + i) as u8)
        .collect()
}

fn pop_vec(consumer: &mut ring::Consumer) -> Result<Vec<u8>, PopError> {
    let record = consumer.pop()?;
    let mut out = Vec::new();
    record.append_to(&mut out);
    record.consume();
    Ok(out)
}

#[test]
fn records_come_out_in_order_and_intact_across_many_wraparounds() {
    let iterations = if cfg!(miri) { 60 } else { 3000 };
    for capacity in [64, 128, 1024] {
        let (mut producer, mut consumer) = ring::with_capacity(capacity).unwrap();
        let max = max_record_len(capacity);
        let mut model = VecDeque::new();
        for i in 0..iterations {
            // Sizes cycle through every length up to the maximum, so records start at every
            // aligned offset and the padding path runs often.
            let record = pattern(i, (i * 7) % (max + 1));
            match producer.push(&record) {
                Ok(()) => model.push_back(record),
                Err(PushError::Full) => {
                    let expected = model.pop_front().expect("full ring holds something");
                    assert_eq!(pop_vec(&mut consumer).unwrap(), expected);
                }
                Err(e) => panic!("unexpected {e}"),
            }
            if i % 3 == 0 {
                if let Some(expected) = model.pop_front() {
                    assert_eq!(pop_vec(&mut consumer).unwrap(), expected);
                }
            }
        }
        while let Some(expected) = model.pop_front() {
            assert_eq!(pop_vec(&mut consumer).unwrap(), expected);
        }
        assert_eq!(consumer.pop().err(), Some(PopError::Empty));
    }
}

#[test]
fn full_ring_refuses_a_push_and_keeps_what_it_holds() {
    let (mut producer, mut consumer) = ring::with_capacity(128).unwrap();
    let mut pushed = 0;
    while producer.push(&pattern(pushed, 20)).is_ok() {
        pushed += 1;
    }
    assert_eq!(pushed, 4); // 4 records of 8 + 24 bytes fill 128
    assert_eq!(producer.push(&[]), Err(PushError::Full));
    for i in 0..pushed {
        assert_eq!(pop_vec(&mut consumer).unwrap(), pattern(i, 20));
    }
    producer.push(b"again").unwrap();
}

#[test]
fn a_record_of_the_maximum_length_always_fits_an_empty_ring() {
    let (mut producer, mut consumer) = ring::with_capacity(256).unwrap();
    for start in 0..40 {
        producer.push(&pattern(start, start % 17)).unwrap();
        pop_vec(&mut consumer).unwrap();
        let big = pattern(start, max_record_len(256));
        producer.push(&big).unwrap();
        assert_eq!(pop_vec(&mut consumer).unwrap(), big);
    }
}

#[test]
fn a_record_longer_than_the_maximum_is_refused() {
    let (mut producer, _consumer) = ring::with_capacity(256).unwrap();
    assert_eq!(
        producer.push(&[0; 121]),
        Err(PushError::TooLarge { len: 121, max: 120 })
    );
}

#[test]
fn an_unconsumed_record_is_read_again() {
    let (mut producer, mut consumer) = ring::with_capacity(64).unwrap();
    producer.push(b"keep").unwrap();
    assert_eq!(consumer.pop().unwrap().len(), 4);
    assert_eq!(pop_vec(&mut consumer).unwrap(), b"keep");
}

#[test]
fn a_dropped_reservation_publishes_nothing() {
    let (mut producer, mut consumer) = ring::with_capacity(64).unwrap();
    {
        let mut slot = producer.reserve(4).unwrap();
        slot.write(b"lost");
    }
    assert_eq!(consumer.pop().err(), Some(PopError::Empty));
    producer.push(b"kept").unwrap();
    assert_eq!(pop_vec(&mut consumer).unwrap(), b"kept");
}

#[test]
fn a_frame_written_in_parts_reads_back_as_one_frame_with_its_deadline() {
    let (mut producer, mut consumer) = ring::with_capacity(1024).unwrap();
    let frame = Frame::call(42, "echo", Codec::MsgPack, b"\x80").with_deadline_ns(1234);
    let mut header = [0u8; 48];
    frame.write_header(&mut header);
    let mut slot = producer.reserve(frame.encoded_len()).unwrap();
    slot.write(&header);
    slot.write(b"echo");
    slot.write(b"\x80");
    slot.commit();
    let record = consumer.pop().unwrap();
    assert_eq!(record.peek_deadline(), Some((42, 1234)));
    let mut bytes = Vec::new();
    record.append_to(&mut bytes);
    assert_eq!(bytes, frame.encode_to_vec());
}

/// The copies in and out of the data area move aligned words and single bytes at the edges:
/// every split of a record into two writes (the second starting at any alignment) and every
/// prefix read must give back exactly the bytes written.
#[test]
fn records_written_in_parts_at_any_alignment_read_back_intact_at_any_prefix() {
    let (mut producer, mut consumer) = ring::with_capacity(256).unwrap();
    for len in 0..=41 {
        for split in 0..=len {
            let record = pattern(len * 64 + split, len);
            let mut slot = producer.reserve(len).unwrap();
            slot.write(&record[..split]);
            slot.write(&record[split..]);
            slot.commit();
            let popped = consumer.pop().unwrap();
            for prefix in 0..=len {
                let mut out = vec![0u8; prefix];
                assert_eq!(popped.copy_prefix(&mut out), prefix);
                assert_eq!(out, record[..prefix], "len {len}, split {split}");
            }
            popped.consume();
        }
    }
}

#[test]
fn a_record_shorter_than_a_frame_header_has_no_deadline() {
    let (mut producer, mut consumer) = ring::with_capacity(64).unwrap();
    producer.push(b"short").unwrap();
    assert_eq!(consumer.pop().unwrap().peek_deadline(), None);
}

#[test]
#[cfg_attr(miri, ignore = "futex and clock syscalls are not supported by Miri")]
fn a_sleeping_consumer_is_woken_by_a_push_from_another_thread() {
    let (mut producer, mut consumer) = ring::with_capacity(1024).unwrap();
    let count = 2000u32;
    let reader = std::thread::spawn(move || {
        // No spinning: every wait that finds the ring empty goes through the futex.
        let config = WaitConfig {
            spin: Duration::ZERO,
            sleep_slice_ns: 1_000_000_000,
        };
        for expected in 0..count {
            let deadline = monotonic_now_ns() + 10_000_000_000; // hang guard only
            assert_eq!(
                consumer.wait(deadline, &config, || false).unwrap(),
                WaitOutcome::Ready
            );
            assert_eq!(pop_vec(&mut consumer).unwrap(), expected.to_le_bytes());
        }
    });
    for i in 0..count {
        while producer.push(&i.to_le_bytes()) == Err(PushError::Full) {
            std::thread::yield_now();
        }
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    reader.join().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "futex and clock syscalls are not supported by Miri")]
fn a_wait_ends_at_its_deadline_or_when_closed() {
    let (_producer, mut consumer) = ring::with_capacity(64).unwrap();
    let config = WaitConfig {
        spin: Duration::from_micros(10),
        sleep_slice_ns: 1_000_000,
    };
    let deadline = monotonic_now_ns() + 3_000_000;
    assert_eq!(
        consumer.wait(deadline, &config, || false).unwrap(),
        WaitOutcome::TimedOut
    );
    assert!(monotonic_now_ns() >= deadline);
    let mut checks = 0;
    let closed_on_third_check = || {
        checks += 1;
        checks >= 3
    };
    let far = monotonic_now_ns() + 10_000_000_000;
    assert_eq!(
        consumer.wait(far, &config, closed_on_third_check).unwrap(),
        WaitOutcome::Closed
    );
}

#[test]
#[cfg_attr(miri, ignore = "futex and clock syscalls are not supported by Miri")]
fn a_spin_window_longer_than_the_maximum_is_cut_to_it() {
    let (_producer, mut consumer) = ring::with_capacity(64).unwrap();
    // Spinning never asks `is_closed`: only a wait that went to sleep can see the segment
    // closed. With a whole-day window and no deadline, that takes the cap.
    let config = WaitConfig {
        spin: Duration::from_secs(86_400),
        ..WaitConfig::default()
    };
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        done.send(consumer.wait(u64::MAX, &config, || true).unwrap())
            .unwrap();
    });
    assert_eq!(
        outcome.recv_timeout(Duration::from_secs(10)), // hang guard only
        Ok(WaitOutcome::Closed)
    );
}

#[test]
#[cfg_attr(miri, ignore = "futex and clock syscalls are not supported by Miri")]
fn a_consumer_whose_spins_do_not_pay_stops_spinning() {
    let (mut producer, mut consumer) = ring::with_capacity(64).unwrap();
    let config = WaitConfig {
        spin: Duration::from_micros(5),
        sleep_slice_ns: 1_000_000,
    };
    // Nothing comes: each wait spins the whole window in vain, then times out.
    for _ in 0..2 {
        assert!(consumer.spin_policy().is_spinning());
        let soon = monotonic_now_ns() + 1_000_000;
        assert_eq!(
            consumer.wait(soon, &config, || false).unwrap(),
            WaitOutcome::TimedOut
        );
    }
    assert!(!consumer.spin_policy().is_spinning());
    // A record that is already there is taken without waiting, and teaches nothing.
    producer.push(b"x").unwrap();
    assert_eq!(
        consumer.wait(u64::MAX, &config, || false).unwrap(),
        WaitOutcome::Ready
    );
    assert!(!consumer.spin_policy().is_spinning());
    pop_vec(&mut consumer).unwrap();
}
