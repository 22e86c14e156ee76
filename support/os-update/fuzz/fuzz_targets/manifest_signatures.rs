//! `cargo fuzz` entry point of [`testudo_os_update_fuzz::manifest_signatures`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_os_update_fuzz::manifest_signatures::fuzz(data));
