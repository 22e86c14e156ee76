//! system.conf text.

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = testudo_updater::SystemConf::parse(text, None);
    }
}
