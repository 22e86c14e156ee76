//! `cargo fuzz` entry point of [`testudo_agent_fuzz::tpm_hmac_response`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_agent_fuzz::tpm_hmac_response::fuzz(data));
