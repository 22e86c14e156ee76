//! Promise: bundles made by the real `rauc bundle` (1.8) are verified, extracted and
//! installed by testudo, in plain and verity format, EC and RSA, through an intermediate CA.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::Path;

use testudo_updater::keys::KeyKind;
use testudo_updater::BundleFormat;

fn rauc_bundle(pki: &common::Pki, image: &Path, format: &str, out: &Path) {
    let content = out.with_extension("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::copy(image, content.join("rootfs.img")).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        format!("[update]\ncompatible=gw\nversion=3.1\n\n[bundle]\nformat={format}\n\n[image.rootfs]\nfilename=rootfs.img\n"),
    )
    .unwrap();
    common::rauc_bundle(pki, &content, out);
}

fn check(kind: KeyKind, intermediate: bool, format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::valid_pki(&dir.path().join("pki"), kind, intermediate);
    let v1 = common::image(&dir.path().join("v1.img"), 150_000, 1);
    let v3 = common::image(&dir.path().join("v3.img"), 333_333, 3);
    let bundle_path = dir.path().join("rauc.raucb");
    rauc_bundle(&pki, &v3, format, &bundle_path);

    let bundle = common::open_bundle(&bundle_path, &pki);
    assert_eq!(
        bundle.manifest.format,
        format.parse::<BundleFormat>().unwrap()
    );
    assert_eq!(bundle.manifest.version.as_deref(), Some("3.1"));
    assert_eq!(bundle.signer.subject(), "CN = test signer");
    assert_eq!(bundle.signer.chain.len(), if intermediate { 3 } else { 2 });

    let out = dir.path().join("x");
    bundle.extract(&out).unwrap();
    assert_eq!(
        std::fs::read(out.join("rootfs.img")).unwrap(),
        std::fs::read(&v3).unwrap()
    );

    let device = common::device(&dir.path().join("dev"), &pki.keyring, "gw", &v1, "1.0");
    let report = device.install("A", &bundle).unwrap();
    assert_eq!(report.bootname, "B");
    assert_eq!(
        std::fs::read(&device.slot_b).unwrap(),
        std::fs::read(&v3).unwrap()
    );
    assert_eq!(device.boot().as_deref(), Some("B"));
}

#[test]
fn verity_ec() {
    check(KeyKind::EcP256, false, "verity");
}

#[test]
fn plain_ec_with_intermediate() {
    check(KeyKind::EcP256, true, "plain");
}

#[test]
fn verity_rsa_with_intermediate() {
    check(KeyKind::Rsa2048, true, "verity");
}

#[test]
fn plain_rsa() {
    check(KeyKind::Rsa2048, false, "plain");
}
