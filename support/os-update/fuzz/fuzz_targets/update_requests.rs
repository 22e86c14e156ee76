//! `cargo fuzz` entry point of [`testudo_os_update_fuzz::update_requests`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_os_update_fuzz::update_requests::fuzz(data));
