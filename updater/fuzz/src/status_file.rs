//! The key-file dialect of the slot status file (and of manifests and system.conf).

use testudo_updater::ini::KeyFile;

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = KeyFile::parse(text, "fuzz") {
            assert_eq!(KeyFile::parse(&file.render(), "fuzz").ok(), Some(file));
        }
    }
}
