#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scop_dkim::fuzz::parse_signature(data));
