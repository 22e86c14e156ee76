//! `cargo fuzz` entry point of [`testudo_os_update_fuzz::import_manifests`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_os_update_fuzz::import_manifests::fuzz(data));
