//! Promise: a delta bundle made from two full bundles is a small fraction of the full one,
//! is read by the real `rauc info`, carries a standard bsdiff 4 patch (Debian's `bspatch`
//! makes the same image from it), and installs into the inactive slot exactly the new
//! image, read from the active one. Every bad delta is refused, and the inactive slot is
//! never marked bootable: a delta for another base (checked by the status record, or by
//! hashing a slot without one, before anything is written), a corrupted, truncated or
//! re-signed-with-another-manifest bundle (refused when opened), a patch that produces other
//! bytes than the signed target (sha256 or verity root), a malformed patch, and a power cut
//! in the middle. Full bundles carry RAUC's block hash index, byte-identical to rauc's.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use testudo_updater::bootloader::BootState;
use testudo_updater::bundle::BundleSpec;
use testudo_updater::delta::{self, DeltaSpec, ImageIdentity};
use testudo_updater::install::{InstallOptions, Step};
use testudo_updater::status_file::StatusFile;
use testudo_updater::UpdaterError;

/// Image size: 2 MiB of 4 KiB blocks.
const IMAGE_SIZE: usize = 2 << 20;

/// The set-up: slot A holds `v1` (1.0), full bundles of `v1` and `v2` (2.0), and the delta.
struct DeltaSetup {
    dir: tempfile::TempDir,
    pki: common::Pki,
    v1: PathBuf,
    v2: PathBuf,
    full_v1: PathBuf,
    full_v2: PathBuf,
    delta: PathBuf,
}

/// `v2` is `v1` with bytes inserted near the start (shifting everything after them), a
/// patched region and its tail cut to keep whole blocks: what a rebuilt file does to an
/// uncompressed image.
fn setup() -> DeltaSetup {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    let v1 = common::image(&dir.path().join("rootfs.img"), IMAGE_SIZE, 1);
    let mut new = std::fs::read(&v1).unwrap();
    new.splice(70_000..70_000, (0..3000u32).map(|i| (i * 7) as u8));
    for byte in &mut new[1_000_000..1_000_400] {
        *byte = !*byte;
    }
    new.truncate(IMAGE_SIZE);
    let v2_dir = dir.path().join("v2");
    std::fs::create_dir(&v2_dir).unwrap();
    let v2 = v2_dir.join("rootfs.img");
    std::fs::write(&v2, &new).unwrap();
    let full_v1 = full_bundle(&pki, &v1, "1.0", &dir.path().join("v1.raucb"));
    let full_v2 = full_bundle(&pki, &v2, "2.0", &dir.path().join("v2.raucb"));
    let delta = dir.path().join("v1-to-v2.raucb");
    delta::create(
        &common::open_bundle(&full_v1, &pki),
        &common::open_bundle(&full_v2, &pki),
        &pki.signer,
        &delta,
    )
    .unwrap();
    DeltaSetup {
        dir,
        pki,
        v1,
        v2,
        full_v1,
        full_v2,
        delta,
    }
}

fn full_bundle(pki: &common::Pki, image: &Path, version: &str, out: &Path) -> PathBuf {
    let mut spec = BundleSpec::new("gw", version, vec![("rootfs".into(), image.to_path_buf())]);
    spec.adaptive = true;
    common::create_bundle(&spec, pki, out);
    out.to_path_buf()
}

impl DeltaSetup {
    /// A device whose slot A holds `image_a`, recorded as installed (version 1.0).
    fn device(&self, name: &str, image_a: &Path) -> common::Device {
        common::device(
            &self.dir.path().join(name),
            &self.pki.keyring,
            "gw",
            image_a,
            "1.0",
        )
    }
}

/// After a failed install: the device still boots A, never B, and B is not recorded ok.
fn assert_b_not_bootable(device: &common::Device) {
    assert_ne!(
        device.bootloader().state("B").unwrap(),
        BootState::Good,
        "B must not be marked good"
    );
    assert_eq!(device.boot().as_deref(), Some("A"));
    assert_eq!(device.boot().as_deref(), Some("A"));
    let status = StatusFile::load(&device.conf.status_path().unwrap()).unwrap();
    assert_ne!(status.get("rootfs.1").status.as_deref(), Some("ok"));
}

#[test]
fn a_delta_is_small_standard_and_installs_exactly_the_new_image() {
    let setup = setup();
    let full_size = std::fs::metadata(&setup.full_v2).unwrap().len();
    let delta_size = std::fs::metadata(&setup.delta).unwrap().len();
    assert!(
        delta_size * 20 < full_size,
        "delta {delta_size} bytes is not under 5% of the full bundle's {full_size}"
    );

    // The signed manifest names both ends.
    let opened = common::open_bundle(&setup.delta, &setup.pki);
    let entry = &opened.manifest.images[0];
    assert_eq!(entry.filename, "rootfs.img.bsdiff");
    let spec = entry.delta.as_ref().unwrap();
    let v1 = std::fs::read(&setup.v1).unwrap();
    let v2 = std::fs::read(&setup.v2).unwrap();
    assert_eq!(spec.base, ImageIdentity::of(&v1, "v1").unwrap());
    assert_eq!(spec.target, ImageIdentity::of(&v2, "v2").unwrap());

    // The real rauc reads the delta's manifest.
    let info = common::run(
        "rauc",
        &[&"info", &"--keyring", &setup.pki.keyring, &setup.delta],
    );
    common::assert_success("rauc info of a delta bundle", &info);
    assert!(String::from_utf8_lossy(&info.stdout).contains("rootfs.img.bsdiff"));

    // The patch is standard bsdiff 4: Debian's bspatch makes v2 from v1 with it.
    let extracted = setup.dir.path().join("extracted");
    opened.extract(&extracted).unwrap();
    let made = setup.dir.path().join("bspatched.img");
    let bspatch = common::run(
        "bspatch",
        &[&setup.v1, &made, &extracted.join("rootfs.img.bsdiff")],
    );
    common::assert_success("bspatch", &bspatch);
    assert_eq!(std::fs::read(&made).unwrap(), v2);

    // Installed from slot A into slot B: exactly v2, A untouched, recorded as v2.
    let device = setup.device("dev", &setup.v1);
    device.mark_good("A");
    let report = device.install("A", &opened).unwrap();
    assert_eq!(report.target, "rootfs.1");
    assert_eq!(report.bytes_written, IMAGE_SIZE as u64);
    assert_eq!(std::fs::read(&device.slot_b).unwrap(), v2);
    assert_eq!(std::fs::read(&device.slot_a).unwrap(), v1);
    let status = StatusFile::load(&device.conf.status_path().unwrap()).unwrap();
    let record = status.get("rootfs.1");
    assert_eq!(record.sha256, Some(hex::encode(spec.target.sha256)));
    assert_eq!(record.size, Some(IMAGE_SIZE as u64));
    assert_eq!(record.bundle_version.as_deref(), Some("2.0"));
    assert_eq!(device.boot().as_deref(), Some("B"));
}

#[test]
fn a_slot_without_a_status_record_is_hashed_to_check_the_base() {
    let setup = setup();
    let device = setup.device("factory", &setup.v1);
    std::fs::remove_file(device.conf.status_path().unwrap()).unwrap();
    device
        .install("A", &common::open_bundle(&setup.delta, &setup.pki))
        .unwrap();
    assert_eq!(
        std::fs::read(&device.slot_b).unwrap(),
        std::fs::read(&setup.v2).unwrap()
    );

    // The same factory device with other bytes in slot A: refused, nothing written.
    let other = common::image(&setup.dir.path().join("other.img"), IMAGE_SIZE, 9);
    let device = setup.device("factory-other", &other);
    std::fs::remove_file(device.conf.status_path().unwrap()).unwrap();
    let before = device.snapshot();
    let error = device
        .install("A", &common::open_bundle(&setup.delta, &setup.pki))
        .unwrap_err();
    assert!(matches!(error, UpdaterError::DeltaBase { .. }), "{error}");
    assert_eq!(device.snapshot(), before, "a refused base writes nothing");
}

#[test]
fn a_delta_for_another_base_is_refused_before_anything_is_written() {
    let setup = setup();
    let other = common::image(&setup.dir.path().join("other.img"), IMAGE_SIZE, 9);
    let device = setup.device("dev", &other);
    device.mark_good("A");
    let before = device.snapshot();
    let error = device
        .install("A", &common::open_bundle(&setup.delta, &setup.pki))
        .unwrap_err();
    assert!(matches!(error, UpdaterError::DeltaBase { .. }), "{error}");
    assert!(error.to_string().contains("rootfs.0"), "{error}");
    assert_eq!(device.snapshot(), before, "a refused base writes nothing");
    // The full bundle installs on the same device (the fallback).
    device
        .install("A", &common::open_bundle(&setup.full_v2, &setup.pki))
        .unwrap();
    assert_eq!(
        std::fs::read(&device.slot_b).unwrap(),
        std::fs::read(&setup.v2).unwrap()
    );
}

#[test]
fn corrupted_truncated_or_altered_deltas_are_refused_when_opened() {
    let setup = setup();
    let bytes = std::fs::read(&setup.delta).unwrap();
    let keyring = common::keyring(&setup.pki.keyring);
    let (payload_size, _) = common::bundle_layout(&bytes);

    // A flipped byte in the patch (inside the payload).
    let mut corrupt = bytes.clone();
    corrupt[(payload_size / 3) as usize] ^= 0x01;
    // The bundle cut short.
    let truncated = bytes[..bytes.len() / 2].to_vec();
    // The signed manifest's target hash changed (inside the CMS content).
    let manifest = common::open_bundle(&setup.delta, &setup.pki).manifest;
    let target = hex::encode(manifest.images[0].delta.as_ref().unwrap().target.sha256);
    let at = bytes
        .windows(target.len())
        .rposition(|w| w == target.as_bytes())
        .unwrap();
    let mut altered = bytes.clone();
    altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };

    for (name, variant) in [
        ("corrupt", corrupt),
        ("truncated", truncated),
        ("altered", altered),
    ] {
        let path = setup.dir.path().join(format!("{name}.raucb"));
        std::fs::write(&path, variant).unwrap();
        assert!(
            testudo_updater::bundle::open(&path, &keyring).is_err(),
            "{name} delta bundle was accepted"
        );
    }
}

/// A delta bundle signed by the right key whose manifest names `target` (and the real
/// patch), or whose patch file is `patch` instead of the real one.
fn signed_delta(
    setup: &DeltaSetup,
    name: &str,
    target: ImageIdentity,
    patch: Option<&[u8]>,
) -> PathBuf {
    let real = common::open_bundle(&setup.delta, &setup.pki);
    let staged = setup.dir.path().join(name);
    real.extract(&staged).unwrap();
    let patch_path = staged.join("rootfs.img.bsdiff");
    if let Some(bytes) = patch {
        std::fs::write(&patch_path, bytes).unwrap();
    }
    let mut spec = BundleSpec::new("gw", "2.0", vec![("rootfs".into(), patch_path)]);
    let base = real.manifest.images[0].delta.as_ref().unwrap().base;
    spec.deltas = BTreeMap::from([("rootfs".to_owned(), DeltaSpec { base, target })]);
    let out = setup.dir.path().join(format!("{name}.raucb"));
    common::create_bundle(&spec, &setup.pki, &out);
    out
}

/// The signed target of the set-up's real delta.
fn real_target(setup: &DeltaSetup) -> ImageIdentity {
    common::open_bundle(&setup.delta, &setup.pki)
        .manifest
        .images[0]
        .delta
        .clone()
        .unwrap()
        .target
}

/// Installs `bundle` on a fresh device running v1 (`name`); returns the error, after
/// checking that slot A is untouched and B is not bootable.
fn refused_install(setup: &DeltaSetup, name: &str, bundle: &Path) -> UpdaterError {
    let device = setup.device(&format!("dev-{name}"), &setup.v1);
    device.mark_good("A");
    let slot_a = std::fs::read(&device.slot_a).unwrap();
    let error = device
        .install("A", &common::open_bundle(bundle, &setup.pki))
        .unwrap_err();
    assert_eq!(std::fs::read(&device.slot_a).unwrap(), slot_a);
    assert_b_not_bootable(&device);
    error
}

#[test]
fn a_patch_that_does_not_produce_the_signed_target_leaves_the_slot_unbootable() {
    let setup = setup();
    let real = real_target(&setup);
    let mut wrong_sha = real;
    wrong_sha.sha256[0] ^= 1;
    let mut wrong_root = real;
    wrong_root.verity_root[31] ^= 1;
    for (name, target, what) in [
        ("wrong-sha", wrong_sha, "sha256"),
        ("wrong-root", wrong_root, "verity root"),
    ] {
        let bundle = signed_delta(&setup, name, target, None);
        let error = refused_install(&setup, name, &bundle);
        assert!(
            matches!(&error, UpdaterError::DeltaResult { message, .. } if message.contains(what)),
            "{name}: {error}"
        );
    }
}

#[test]
fn a_malformed_patch_in_a_signed_bundle_is_an_error_and_the_slot_stays_unbootable() {
    let setup = setup();
    let target = real_target(&setup);
    let mut garbage = b"BSDIFF40".to_vec();
    garbage.extend(std::iter::repeat_n(0xffu8, 4000));
    for (name, patch) in [("garbage", garbage), ("short", b"BSDIFF4".to_vec())] {
        let bundle = signed_delta(&setup, name, target, Some(&patch));
        let error = refused_install(&setup, name, &bundle);
        assert!(
            matches!(error, UpdaterError::ApplyPatch { .. }),
            "{name}: {error}"
        );
    }
}

#[test]
fn a_power_cut_while_patching_leaves_the_old_slot_booting() {
    let setup = setup();
    let device = setup.device("dev", &setup.v1);
    device.mark_good("A");
    let bundle = common::open_bundle(&setup.delta, &setup.pki);
    let options = InstallOptions {
        chunk_size: 256 * 1024,
        ..InstallOptions::default()
    };
    let mut chunks = 0;
    let error = device
        .install_observed("A", &bundle, &options, &mut |_, step| {
            if matches!(step, Step::WriteChunk { .. }) {
                chunks += 1;
                if chunks == 3 {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert!(matches!(error, UpdaterError::Interrupted { .. }), "{error}");
    assert_b_not_bootable(&device);
    // After the power comes back, the same delta installs.
    device.install("A", &bundle).unwrap();
    assert_eq!(
        std::fs::read(&device.slot_b).unwrap(),
        std::fs::read(&setup.v2).unwrap()
    );
}

#[test]
fn full_bundles_carry_raucs_block_hash_index_byte_for_byte() {
    let setup = setup();
    let opened = common::open_bundle(&setup.full_v1, &setup.pki);
    assert_eq!(
        opened.manifest.images[0].adaptive.as_deref(),
        Some("block-hash-index;")
    );
    let ours = common::run(
        "unsquashfs",
        &[&"-cat", &setup.full_v1, &"rootfs.img.block-hash-index"],
    );
    common::assert_success("unsquashfs -cat", &ours);
    assert_eq!(ours.stdout.len(), IMAGE_SIZE / 4096 * 32);

    // rauc's own bundle of the same image with the same manifest option.
    let content = setup.dir.path().join("rauc-content");
    std::fs::create_dir(&content).unwrap();
    std::fs::copy(&setup.v1, content.join("rootfs.img")).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        "[update]\ncompatible=gw\nversion=1.0\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\nadaptive=block-hash-index;\n",
    )
    .unwrap();
    let rauc_bundle = setup.dir.path().join("rauc.raucb");
    common::rauc_bundle(&setup.pki, &content, &rauc_bundle);
    let theirs = common::run(
        "unsquashfs",
        &[&"-cat", &rauc_bundle, &"rootfs.img.block-hash-index"],
    );
    common::assert_success("unsquashfs -cat", &theirs);
    assert_eq!(ours.stdout, theirs.stdout);

    let info = common::run(
        "rauc",
        &[&"info", &"--keyring", &setup.pki.keyring, &setup.full_v1],
    );
    common::assert_success("rauc info of an adaptive bundle", &info);
    assert!(String::from_utf8_lossy(&info.stdout).contains("block-hash-index"));
}
