//! `cargo fuzz` entry point of [`testudo_scheme_fuzz::provider_requests`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_scheme_fuzz::provider_requests::fuzz(data));
