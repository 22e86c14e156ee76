//! `cargo fuzz` entry point of [`testudo_hub_service_fuzz::service_answers`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    testudo_hub_service_fuzz::service_answers::fuzz(data)
});
