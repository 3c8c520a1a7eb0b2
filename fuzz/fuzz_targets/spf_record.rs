#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scop_spf::fuzz::parse_record(data));
