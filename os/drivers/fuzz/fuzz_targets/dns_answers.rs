//! `cargo fuzz` entry point of [`testudo_drivers_fuzz::dns_answers`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_drivers_fuzz::dns_answers::fuzz(data));
