//! Init's status as the updater component reads it (`name state restarts` lines): parsing and
//! judging any text never panics.

use std::time::Duration;

use testudo_update_service::health::{parse_status, HealthPolicy, HealthWatch};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(snapshot) = parse_status(text) {
        let mut watch = HealthWatch::new(HealthPolicy::default());
        let _ = watch.observe(&snapshot, Duration::ZERO);
        let _ = watch.observe(&snapshot, Duration::from_secs(3600));
    }
}
