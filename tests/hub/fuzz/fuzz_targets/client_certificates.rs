//! `cargo fuzz` entry point of [`testudo_hub_fuzz::client_certificates`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_hub_fuzz::client_certificates::fuzz(data));
