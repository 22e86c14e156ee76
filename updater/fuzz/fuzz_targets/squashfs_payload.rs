//! `cargo fuzz` entry point of [`testudo_updater_fuzz::squashfs_payload`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_updater_fuzz::squashfs_payload::fuzz(data));
