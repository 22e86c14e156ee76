//! `cargo fuzz` entry point of [`testudo_images_fuzz::manifest_verify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_images_fuzz::manifest_verify::fuzz(data));
