#![no_main]
//! One HTTP request through molt-web's path, query and body extraction; see
//! [`molt_fuzz::web_request`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| molt_fuzz::web_request(data));
