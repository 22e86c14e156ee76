//! Untrusted twin JSON from the hub: full documents and desired patches must parse or fail
//! cleanly, and feeding whatever parses to the tracker must keep versions strictly increasing.

use testudo_agent::twin::{parse_desired_patch, parse_full_twin, DesiredTracker};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let mut tracker = DesiredTracker::new();
    let mut last = None;
    // Split the input into a sequence of documents on 0xFF bytes (never valid in UTF-8 JSON).
    for chunk in data.split(|b| *b == 0xFF) {
        let step = match (chunk.first(), parse_full_twin(chunk)) {
            (_, Ok(full)) => tracker.on_full_twin(full.desired_version, full.desired),
            _ => match parse_desired_patch(chunk) {
                Ok((version, patch)) => tracker.on_patch(version, patch),
                Err(_) => continue,
            },
        };
        for change in step.changes {
            if change.kind == testudo_agent::ChangeKind::Patch {
                if let Some(previous) = last {
                    assert!(change.version > previous, "patch versions must increase");
                }
            }
            last = Some(change.version);
        }
    }
    let _ = testudo_agent::dps::parse_operation(data);
}
