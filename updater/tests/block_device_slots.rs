//! Promise: slots can be real block devices (loop devices here): the image is written in
//! place and verified, the rest of the device is left alone, and an image larger than the
//! device is refused before anything is written.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use testudo_updater::install::{self, InstallOptions};
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
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    let v1 = common::image(&dir.path().join("v1.img"), 100_000, 1);
    let v2 = common::image(&dir.path().join("v2.img"), 300_000, 2);
    let huge = common::image(&dir.path().join("huge.img"), 600_000, 3);
    let backing_a = dir.path().join("a.backing");
    let backing_b = dir.path().join("b.backing");
    std::fs::write(&backing_a, vec![0x11u8; 512 * 1024]).unwrap();
    std::fs::write(&backing_b, vec![0x22u8; 512 * 1024]).unwrap();
    let loop_a = Loop::new(&backing_a);
    let loop_b = Loop::new(&backing_b);

    let mut device = common::device(&dir.path().join("dev"), &pki.keyring, "gw", &v1, "1.0");
    device.conf.slots[0].device = loop_a.0.clone();
    device.conf.slots[1].device = loop_b.0.clone();
    let keyring = common::keyring(&pki.keyring);

    // Too large for the 512 KiB device: refused, device untouched.
    let huge_bundle = common::make_bundle(&pki, &huge, "gw", "3.0", &dir.path().join("huge.raucb"));
    let bundle = testudo_updater::bundle::open(&huge_bundle, &keyring).unwrap();
    let env_before = std::fs::read(&device.grubenv).unwrap();
    let err = install::install(
        &device.conf,
        device.booted_slot("A"),
        &bundle,
        device.bootloader().as_mut(),
        &InstallOptions::default(),
        &mut |_, _| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(matches!(err, UpdaterError::TargetSlot { .. }), "{err:?}");
    assert!(err.to_string().contains("does not fit"), "{err}");
    assert_eq!(std::fs::read(&device.grubenv).unwrap(), env_before);
    assert_eq!(std::fs::read(&loop_b.0).unwrap(), vec![0x22u8; 512 * 1024]);

    // Fits: written in place, tail of the device untouched, read back from the device.
    let bundle_path = common::make_bundle(&pki, &v2, "gw", "2.0", &dir.path().join("v2.raucb"));
    let bundle = testudo_updater::bundle::open(&bundle_path, &keyring).unwrap();
    install::install(
        &device.conf,
        device.booted_slot("A"),
        &bundle,
        device.bootloader().as_mut(),
        &InstallOptions::default(),
        &mut |_, _| ControlFlow::Continue(()),
    )
    .unwrap();
    let written = std::fs::read(&loop_b.0).unwrap();
    assert_eq!(written.len(), 512 * 1024, "a block device is never resized");
    assert_eq!(&written[..300_000], &std::fs::read(&v2).unwrap()[..]);
    assert!(written[300_000..].iter().all(|&b| b == 0x22));
    assert_eq!(
        std::fs::read(&loop_a.0).unwrap(),
        vec![0x11u8; 512 * 1024],
        "booted slot written"
    );
    assert_eq!(device.boot().as_deref(), Some("B"));
}
