//! `cargo fuzz` entry point of [`testudo_agent_fuzz::tpm_responses`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_agent_fuzz::tpm_responses::fuzz(data));
