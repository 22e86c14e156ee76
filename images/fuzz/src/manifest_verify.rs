//! Fuzzes the signed-manifest reader: arbitrary bytes must give an error or a verified
//! manifest, never a panic.

use std::path::Path;

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let _ = testudo_images::manifest::verify(data, Path::new("manifest.json"), None);
}
