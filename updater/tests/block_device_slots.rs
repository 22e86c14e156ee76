//! Promise: slots can be real block devices (loop devices here): the image is written in
//! place and verified, the rest of the device is left alone, and an image larger than the
//! device is refused before anything is written.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};

use testudo_updater::UpdaterError;

/// A loop device over a file; detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn new(backing: &Path) -> Loop {
        let output = common::run("losetup", &[&"--find", &"--show", &backing]);
        common::assert_success(
            "losetup --find --show (needs root and /dev/loop-control)",
            &output,
        );
        Loop(PathBuf::from(
            String::from_utf8(output.stdout).unwrap().trim(),
        ))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn installs_into_a_loop_device_and_refuses_an_oversized_image() {
    let mut update = common::ab_update(100_000, 300_000);
    let dir = update.dir.path().to_path_buf();
    let huge = common::image(&dir.join("huge.img"), 600_000, 3);
    let backing_a = dir.join("a.backing");
    let backing_b = dir.join("b.backing");
    std::fs::write(&backing_a, vec![0x11u8; 512 * 1024]).unwrap();
    std::fs::write(&backing_b, vec![0x22u8; 512 * 1024]).unwrap();
    let loop_a = Loop::new(&backing_a);
    let loop_b = Loop::new(&backing_b);
    update.device.conf.slots[0].device = loop_a.0.clone();
    update.device.conf.slots[1].device = loop_b.0.clone();
    let device = &update.device;

    // Too large for the 512 KiB device: refused, device untouched.
    let huge_bundle = common::make_bundle(&update.pki, &huge, "gw", "3.0", &dir.join("huge.raucb"));
    let env_before = std::fs::read(&device.grubenv).unwrap();
    let err = device
        .install("A", &common::open_bundle(&huge_bundle, &update.pki))
        .unwrap_err();
    assert!(matches!(err, UpdaterError::TargetSlot { .. }), "{err:?}");
    assert!(err.to_string().contains("does not fit"), "{err}");
    assert_eq!(std::fs::read(&device.grubenv).unwrap(), env_before);
    assert_eq!(std::fs::read(&loop_b.0).unwrap(), vec![0x22u8; 512 * 1024]);

    // Fits: written in place, tail of the device untouched, read back from the device.
    device.install("A", &update.open_bundle()).unwrap();
    let written = std::fs::read(&loop_b.0).unwrap();
    assert_eq!(written.len(), 512 * 1024, "a block device is never resized");
    assert_eq!(&written[..300_000], &std::fs::read(&update.v2).unwrap()[..]);
    assert!(written[300_000..].iter().all(|&b| b == 0x22));
    assert_eq!(
        std::fs::read(&loop_a.0).unwrap(),
        vec![0x11u8; 512 * 1024],
        "booted slot written"
    );
    assert_eq!(device.boot().as_deref(), Some("B"));
}
