//! `cargo fuzz` entry point of [`testudo_agent_fuzz::device_documents`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_agent_fuzz::device_documents::fuzz(data));
