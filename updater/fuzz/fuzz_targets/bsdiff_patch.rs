//! `cargo fuzz` entry point of [`testudo_updater_fuzz::bsdiff_patch`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_updater_fuzz::bsdiff_patch::fuzz(data));
