//! `cargo fuzz` entry point of [`testudo_wasm_host_fuzz::sidecar`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_wasm_host_fuzz::sidecar::fuzz(data));
