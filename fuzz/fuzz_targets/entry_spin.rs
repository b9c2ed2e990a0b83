#![no_main]
//! The `spin` entry's payload decoding; see [`molt_fuzz::entry_call`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_fuzz::entry_call("spin", data));
