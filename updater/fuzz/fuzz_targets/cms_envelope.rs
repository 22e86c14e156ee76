//! `cargo fuzz` entry point of [`testudo_updater_fuzz::cms_envelope`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_updater_fuzz::cms_envelope::fuzz(data));
