//! `cargo fuzz` entry point of [`testudo_deployment_fuzz::session_states`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_deployment_fuzz::session_states::fuzz(data));
