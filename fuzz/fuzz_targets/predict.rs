#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlpserve_fuzz::predict(data));
