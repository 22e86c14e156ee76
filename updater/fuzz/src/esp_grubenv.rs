//! The ESP as the updater component reads it: any bytes as the partition, a FAT file system
//! with a grubenv or not. Loading never panics; when it succeeds, storing the same environment
//! back works and reads back equal.

use std::io::Write;

use testudo_updater::bootloader::esp::EspGrubEnv;

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    let esp = EspGrubEnv::new(file.path(), "/EFI/testudo/grubenv");
    if let Ok(env) = esp.load() {
        if esp.store(&env).is_ok() {
            assert_eq!(esp.load().ok(), Some(env));
        }
    }
}
