//! `cargo fuzz` entry point of [`testudo_wasm_host_fuzz::untrusted_app`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_wasm_host_fuzz::untrusted_app::fuzz(data));
