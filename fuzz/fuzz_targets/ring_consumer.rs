#![no_main]
//! See [`molt_fuzz::ring_consumer`] for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_fuzz::ring_consumer(data));
