//! Promise: an install writes only the inactive slot, verifies it, and makes it primary with
//! one try; a new slot not marked good before its try is used is abandoned and the old slot
//! boots again (GRUB boot-loop simulation); a slot marked good keeps booting.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use testudo_updater::bootloader::BootState;
use testudo_updater::install::{self, InstallOptions};
use testudo_updater::mark::{Mark, MarkTarget};
use testudo_updater::status_file::StatusFile;

#[test]
fn new_slot_boots_once_then_rolls_back_unless_marked_good() {
    let update = common::ab_update(200_000, 250_000);
    let device = &update.device;

    assert_eq!(device.boot().as_deref(), Some("A"));
    device.mark_good("A");
    let slot_a_before = std::fs::read(&device.slot_a).unwrap();

    let report = device.install("A", &update.open_bundle()).unwrap();
    assert_eq!(report.target, "rootfs.1");
    assert_eq!(
        std::fs::read(&device.slot_b).unwrap(),
        std::fs::read(&update.v2).unwrap()
    );
    assert_eq!(
        std::fs::read(&device.slot_a).unwrap(),
        slot_a_before,
        "running slot was written"
    );
    let status = StatusFile::load(&device.conf.status_path().unwrap()).unwrap();
    assert_eq!(
        status.get("rootfs.1").bundle_version.as_deref(),
        Some("2.0")
    );
    assert_eq!(status.get("rootfs.1").status.as_deref(), Some("ok"));

    // Boot B once; it fails before marking itself good: the next boot is A again.
    assert_eq!(device.boot().as_deref(), Some("B"));
    assert_eq!(
        device.bootloader().state("B").unwrap(),
        BootState::Bad,
        "an unconfirmed try counts as used"
    );
    assert_eq!(device.boot().as_deref(), Some("A"));
    device.mark_good("A");
    assert_eq!(
        device.boot().as_deref(),
        Some("A"),
        "abandoned B must not come back"
    );

    // Re-activate B; this time it marks itself good and keeps booting.
    device.mark("A", Mark::Active, &MarkTarget::Other);
    assert_eq!(device.boot().as_deref(), Some("B"));
    device.mark_good("B");
    for _ in 0..3 {
        assert_eq!(device.boot().as_deref(), Some("B"));
        device.mark_good("B");
    }
}

#[test]
fn installing_from_b_writes_a_and_never_b() {
    let update = common::ab_update(100_000, 120_000);
    let device = &update.device;
    let slot_b_before = std::fs::read(&device.slot_b).unwrap();
    let bundle = update.open_bundle();
    let report = device
        .install_observed("B", &bundle, &InstallOptions::default(), &mut |_, step| {
            if let install::Step::WriteChunk { slot, .. } = step {
                assert_eq!(slot, "rootfs.0");
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(report.bootname, "A");
    assert_eq!(std::fs::read(&device.slot_b).unwrap(), slot_b_before);
    assert_eq!(
        std::fs::read(&device.slot_a).unwrap(),
        std::fs::read(&update.v2).unwrap()
    );
    assert_eq!(device.env().order(), vec!["A", "B"]);
}

/// A correctly signed bundle whose image does not match the manifest's sha256 (a signing
/// mistake, or a payload swapped after verification) is caught while streaming: the install
/// fails and the half-written target is left not bootable.
#[test]
fn image_hash_mismatch_leaves_target_unbootable() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    let v1 = common::image(&dir.path().join("v1.img"), 100_000, 1);
    let device = common::device(&dir.path().join("dev"), &pki.keyring, "gw", &v1, "1.0");
    let bundle_path = bundle_with_wrong_image_hash(dir.path(), &pki);

    let bundle = common::open_bundle(&bundle_path, &pki);
    let err = device.install("A", &bundle).unwrap_err();
    assert!(
        matches!(err, testudo_updater::UpdaterError::VerifyImage { .. }),
        "{err:?}"
    );
    assert_eq!(device.bootloader().state("B").unwrap(), BootState::Bad);
    assert_eq!(device.boot().as_deref(), Some("A"));
    let status = StatusFile::load(&device.conf.status_path().unwrap()).unwrap();
    assert_eq!(status.get("rootfs.1").status.as_deref(), Some("failed"));
}

/// Hand-made, correctly signed verity bundle `dir/liar.raucb`: its payload holds one image,
/// the signed manifest claims the sha256 of another of the same size.
fn bundle_with_wrong_image_hash(dir: &Path, pki: &common::Pki) -> PathBuf {
    use std::io::Write;
    use testudo_updater::manifest::{ImageEntry, Manifest, VerityParams};
    use testudo_updater::{payload, signature, verity, BundleFormat};

    let content = dir.join("content");
    std::fs::create_dir(&content).unwrap();
    common::image(&content.join("rootfs.img"), 120_000, 7);
    let claimed = common::image(&dir.join("claimed.img"), 120_000, 8);
    let (sha256, size) = testudo_updater::bundle::sha256_file(&claimed).unwrap();
    let mut manifest = Manifest {
        compatible: "gw".into(),
        version: Some("2.0".into()),
        description: None,
        build: None,
        format: BundleFormat::Verity,
        verity: None,
        crypt_key: None,
        hooks_filename: None,
        hooks: Vec::new(),
        handler: None,
        images: vec![ImageEntry {
            slot_class: "rootfs".into(),
            variant: None,
            filename: "rootfs.img".into(),
            sha256,
            size,
            hooks: Vec::new(),
            adaptive: None,
            delta: None,
        }],
    };
    std::fs::write(content.join("manifest.raucm"), manifest.render()).unwrap();
    let bundle_path = dir.join("liar.raucb");
    common::require("mksquashfs");
    payload::create(&content, &bundle_path, &[]).unwrap();
    let mut data = std::fs::read(&bundle_path).unwrap();
    data.resize(data.len().div_ceil(4096).max(2) * 4096, 0);
    let salt = [7u8; 32];
    let tree = verity::compute(&data[..], data.len() as u64, &salt).unwrap();
    manifest.verity = Some(VerityParams {
        root_hash: tree.root_hash,
        salt,
        hash_tree_size: tree.bytes.len() as u64,
    });
    let cms =
        signature::sign_inline(manifest.render().as_bytes(), &pki.signer.load().unwrap()).unwrap();
    let mut file = std::fs::File::create(&bundle_path).unwrap();
    file.write_all(&data).unwrap();
    file.write_all(&tree.bytes).unwrap();
    file.write_all(&cms).unwrap();
    file.write_all(&(cms.len() as u64).to_be_bytes()).unwrap();
    bundle_path
}
