#![no_main]
//! See [`molt_fuzz::frame_decode`] for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_fuzz::frame_decode(data));
