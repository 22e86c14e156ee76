//! The in-process squashfs reader of bundle payloads (`testudo_updater::payload`): an image
//! is opened, its root searched for a file, the file read to its end. The installer reads only
//! payloads verified first, so this is defence in depth: a corrupt table or block must be an
//! error, never a panic, a hang or an allocation the input's size does not bound.

use std::sync::OnceLock;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let path = dir().path().join("payload.squashfs");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = testudo_updater::payload::check_files(&path, &[("manifest.raucm", Some(4096))]);
    let _ = testudo_updater::payload::read_file(&path, "rootfs.img", |reader| {
        let mut sink = [0u8; 4096];
        // Bounded: at most 64 MiB of output per input, whatever the tables claim.
        let mut left: u64 = 64 * 1024 * 1024;
        while left > 0 {
            match reader.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
        Ok(())
    });
}
