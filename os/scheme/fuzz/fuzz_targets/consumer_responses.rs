//! `cargo fuzz` entry point of [`testudo_scheme_fuzz::consumer_responses`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_scheme_fuzz::consumer_responses::fuzz(data));
