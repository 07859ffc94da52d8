#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracecast_fuzz::proc_metadata_flat(data));
