//! `cargo fuzz` entry point of [`testudo_agent_fuzz::module_download_heads`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_agent_fuzz::module_download_heads::fuzz(data));
