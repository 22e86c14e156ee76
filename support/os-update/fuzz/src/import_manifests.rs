//! Target `import_manifests`: any bytes as an update manifest through
//! [`testudo_os_update::manifest::parse`]. Nothing may panic; a manifest read writes back to
//! JSON that reads as the same manifest, its bundle step (when it has one) names one of its
//! files, and every compatibility set of it fits a device with exactly those properties.

use testudo_os_update::manifest::{self, MAX_MANIFEST_BYTES};

/// The target's body.
pub fn fuzz(data: &[u8]) {
    let Ok(parsed) = manifest::parse(data) else {
        return;
    };
    let json = parsed.to_json();
    // The written form adds `type` and `handlerProperties` to steps that lacked them: a
    // manifest at the size bound may outgrow it.
    if json.len() <= MAX_MANIFEST_BYTES {
        let again = manifest::parse(json.as_bytes()).expect("a written manifest reads back");
        assert_eq!(again, parsed);
        assert_eq!(again.to_json(), json, "the JSON form is deterministic");
    }
    if let Ok(step) = parsed.bundle_step() {
        assert_eq!(parsed.files.get(step.file_id), Some(step.file));
        assert!(!step.installed_criteria.is_empty());
        assert_eq!(parsed.steps.len(), 1);
    }
    for set in &parsed.compatibility {
        assert!(parsed.is_compatible(set));
    }
}
