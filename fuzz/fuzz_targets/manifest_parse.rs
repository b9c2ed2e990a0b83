#![no_main]
//! See [`molt_fuzz::manifest_parse`] for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_fuzz::manifest_parse(data));
