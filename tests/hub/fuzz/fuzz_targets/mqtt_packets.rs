//! `cargo fuzz` entry point of [`testudo_hub_fuzz::mqtt_packets`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_hub_fuzz::mqtt_packets::fuzz(data));
