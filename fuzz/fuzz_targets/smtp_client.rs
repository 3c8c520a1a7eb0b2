#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scop_smtp::fuzz::client_session(data));
