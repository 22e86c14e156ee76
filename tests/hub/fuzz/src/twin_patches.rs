//! Fuzzes twin handling with untrusted JSON: parsing and applying patches must never panic,
//! a rejected patch must leave the twin unchanged, and an accepted one must keep the
//! document within IoT Hub's limits.

use testudo_hub::twin::{parse_patch, Twin, MAX_DOCUMENT_SIZE};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let mut twin = Twin::default();
    for chunk in data.split(|byte| *byte == 0) {
        let Ok(patch) = parse_patch(chunk) else {
            continue;
        };
        let before = twin.clone();
        match twin.patch_reported(&patch, "2026-01-01T00:00:00.0000000Z") {
            Ok(version) => {
                assert_eq!(version, before.reported.version + 1);
                let size = serde_json::to_vec(&twin.reported.values)
                    .map(|b| b.len())
                    .unwrap_or(0);
                assert!(size <= MAX_DOCUMENT_SIZE);
            }
            Err(_) => assert_eq!(twin, before),
        }
    }
}
