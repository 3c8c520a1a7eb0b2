#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scop_dmarc::fuzz::parse_record(data));
