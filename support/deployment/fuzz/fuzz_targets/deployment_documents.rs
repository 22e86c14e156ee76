//! `cargo fuzz` entry point of [`testudo_deployment_fuzz::deployment_documents`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    testudo_deployment_fuzz::deployment_documents::fuzz(data)
});
