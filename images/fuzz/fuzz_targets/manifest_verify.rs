//! Fuzzes the signed-manifest reader: arbitrary bytes must give an error or a verified
//! manifest, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = testudo_images::manifest::verify(data, Path::new("manifest.json"), None);
});
