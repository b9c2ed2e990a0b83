#![no_main]
//! A table call's payload through molt-data's reader and into Polars; see [`molt_fuzz::table_decode`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_fuzz::table_decode(data));
