//! Target `desired_device_updates`: any desired properties (bytes parsed as JSON, as the
//! agent's twin parser hands them on) through
//! [`testudo_os_update::twin::desired_update`]. Nothing may panic; what is read is within
//! the bounds and copied whole from the document; a manifest and signature read go on to
//! `signature::verify` with the fuzz root key set; the acknowledgement is built.

use serde_json::Value;
use testudo_os_update::manifest::{MAX_FILES, MAX_MANIFEST_BYTES};
use testudo_os_update::signature::{verify, MAX_SIGNATURE_BYTES};
use testudo_os_update::twin::{acknowledgement, desired_update, ACCEPTED, COMPONENT};

use crate::keys::roots;

/// The target's body.
pub fn fuzz(data: &[u8]) {
    let Ok(desired) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let service = desired
        .get(COMPONENT)
        .and_then(|component| component.get("service"));
    let Some(read) = desired_update(&desired) else {
        assert!(service.is_none_or(Value::is_null));
        return;
    };
    let Ok(update) = read else {
        return;
    };
    let service = service.expect("an update was read from deviceUpdate.service");
    assert!(!update.workflow.id.is_empty());
    assert_eq!(
        service["workflow"]["id"].as_str(),
        Some(update.workflow.id.as_str())
    );
    assert_eq!(
        service["updateManifest"].as_str(),
        update.update_manifest.as_deref()
    );
    assert!(update
        .update_manifest
        .as_ref()
        .is_none_or(|m| m.len() <= MAX_MANIFEST_BYTES));
    assert!(update
        .update_manifest_signature
        .as_ref()
        .is_none_or(|s| s.len() <= MAX_SIGNATURE_BYTES));
    assert!(update.file_urls.len() <= MAX_FILES);
    for (file_id, url) in &update.file_urls {
        assert_eq!(service["fileUrls"][file_id].as_str(), Some(url.as_str()));
    }
    if let (Some(manifest), Some(signature)) =
        (&update.update_manifest, &update.update_manifest_signature)
    {
        let _ = verify(manifest, signature, roots());
    }
    let version = desired.get("$version").and_then(Value::as_u64).unwrap_or(0);
    let ack = acknowledgement(version, ACCEPTED, &update.workflow.id);
    assert_eq!(ack[COMPONENT]["service"]["av"], version);
}
