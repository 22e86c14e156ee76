//! `cargo fuzz` entry point of [`testudo_init_fuzz::slot_states`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testudo_init_fuzz::slot_states::fuzz(data));
