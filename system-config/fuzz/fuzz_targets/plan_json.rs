//! `cargo fuzz` entry point of [`testudo_config_fuzz::plan_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_config_fuzz::plan_json::fuzz(data));
