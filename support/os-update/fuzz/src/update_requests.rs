//! Target `update_requests`: any bytes as one write of the `update` capability (what the
//! updater reads from the relay) and as one read (what the relay reads from the updater),
//! through [`UpdateRequest::parse`] and [`UpdateStatus::parse`]. Nothing may panic; what is
//! read is within the bound and survives its own JSON form unchanged.

use testudo_os_update::update_scheme::{
    UpdateRequest, UpdateStatus, MAX_REQUEST_BYTES, MAX_STATUS_BYTES,
};

/// The target's body.
pub fn fuzz(data: &[u8]) {
    if let Some(request) = UpdateRequest::parse(data) {
        assert!(data.len() <= MAX_REQUEST_BYTES);
        assert_eq!(UpdateRequest::parse(&request.to_bytes()), Some(request));
    }
    if let Some(status) = UpdateStatus::parse(data) {
        assert!(data.len() <= MAX_STATUS_BYTES);
        assert_eq!(
            UpdateStatus::parse(status.to_line().as_bytes()),
            Some(status)
        );
    }
}
