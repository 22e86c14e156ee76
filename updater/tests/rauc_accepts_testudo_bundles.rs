//! Promise: bundles testudo creates are accepted by the real `rauc` 1.8 (`rauc info
//! --keyring` and `rauc extract`), in plain and verity format, signed with ECDSA P-256 and
//! RSA, through an intermediate CA, and the extracted image is byte-identical.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};

use testudo_updater::bundle::BundleSpec;
use testudo_updater::keys::KeyKind;
use testudo_updater::BundleFormat;

/// `rauc extract --keyring` of `bundle` into `dir/x`; returns that directory.
fn rauc_extract(pki: &common::Pki, bundle: &Path, dir: &Path) -> PathBuf {
    let extract_dir = dir.join("x");
    let extract = common::run(
        "rauc",
        &[
            &"extract",
            &"--keyring",
            &pki.keyring,
            &bundle,
            &extract_dir,
        ],
    );
    common::assert_success("rauc extract", &extract);
    extract_dir
}

fn check(kind: KeyKind, intermediate: bool, format: BundleFormat) {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::valid_pki(&dir.path().join("pki"), kind, intermediate);
    let image = common::image(&dir.path().join("rootfs.img"), 300_000, 1);
    let mut spec = BundleSpec::new(
        "testudo-test",
        "1.2.3",
        vec![("rootfs".into(), image.clone())],
    );
    spec.format = format;
    let out = dir.path().join("b.raucb");
    common::create_bundle(&spec, &pki, &out);

    let info = common::run("rauc", &[&"info", &"--keyring", &pki.keyring, &out]);
    common::assert_success("rauc info", &info);
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(stdout.contains("'testudo-test'"), "{stdout}");
    assert!(
        stdout.contains(&format!("Bundle Format: \t{}", format.as_str())),
        "{stdout}"
    );

    let extract_dir = rauc_extract(&pki, &out, dir.path());
    assert_eq!(
        std::fs::read(extract_dir.join("rootfs.img")).unwrap(),
        std::fs::read(&image).unwrap()
    );
}

#[test]
fn verity_ec_direct() {
    check(KeyKind::EcP256, false, BundleFormat::Verity);
}

#[test]
fn plain_ec_direct() {
    check(KeyKind::EcP256, false, BundleFormat::Plain);
}

#[test]
fn verity_rsa_with_intermediate() {
    check(KeyKind::Rsa2048, true, BundleFormat::Verity);
}

#[test]
fn plain_rsa_with_intermediate() {
    check(KeyKind::Rsa2048, true, BundleFormat::Plain);
}

#[test]
fn verity_ec_with_intermediate() {
    check(KeyKind::EcP256, true, BundleFormat::Verity);
}

#[test]
fn verity_tiny_image_is_padded_to_two_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    let image = dir.path().join("tiny.img");
    std::fs::write(&image, b"tiny").unwrap();
    let out = common::make_bundle(
        &pki,
        &image,
        "testudo-test",
        "1",
        &dir.path().join("tiny.raucb"),
    );
    let extract_dir = rauc_extract(&pki, &out, dir.path());
    assert_eq!(
        std::fs::read(extract_dir.join("tiny.img")).unwrap(),
        b"tiny"
    );
}
