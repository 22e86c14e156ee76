//! Promise: encrypted bundles (RAUC 1.8 `format=crypt`, `rauc encrypt`) work both ways with
//! the real `rauc`: testudo verifies, extracts and installs rauc's with a recipient's key (any
//! of several recipients), and rauc reads and extracts testudo's (`bundle create` in crypt
//! format, then `crypt::encrypt_bundle`); a key the bundle was not encrypted for, or none, is
//! refused by name with nothing written.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};

use testudo_updater::crypt::{self, Decryptor};
use testudo_updater::keys::{self, KeyKind, Validity};
use testudo_updater::{BundleFormat, BundleSpec, UpdaterError};

/// A device identity for encrypted bundles: certificate and key (PEM) under `dir`.
fn recipient(dir: &Path, name: &str, kind: KeyKind) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let issued = keys::issue(name, kind, Validity::days(5), false, None).unwrap();
    common::write_issued(dir, name, &issued)
}

/// A RAUC system.conf naming the keyring and, when given, the decryption identity, for
/// `rauc -c … info|extract`.
fn rauc_conf(dir: &Path, pki: &common::Pki, identity: Option<&(PathBuf, PathBuf)>) -> PathBuf {
    let mut text = format!(
        "[system]\ncompatible=gw\nbootloader=noop\n\n[keyring]\npath={}\n\n",
        pki.keyring.display()
    );
    if let Some((cert, key)) = identity {
        text.push_str(&format!(
            "[encryption]\nkey={}\ncert={}\n\n",
            key.display(),
            cert.display()
        ));
    }
    text.push_str("[slot.rootfs.0]\ndevice=/dev/null\ntype=raw\nbootname=A\n");
    let path = dir.join("rauc-system.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// `rauc extract` of `bundle` into `out` with the identity `conf` names; the extracted
/// rootfs image.
fn rauc_extract_rootfs(conf: &Path, bundle: &Path, out: &Path) -> Vec<u8> {
    let conf = format!("--conf={}", conf.display());
    let output = common::run("rauc", &[&conf, &"extract", &bundle, &out]);
    common::assert_success("rauc extract", &output);
    std::fs::read(out.join("rootfs.img")).unwrap()
}

fn decryptor(identity: &(PathBuf, PathBuf)) -> Decryptor {
    Decryptor::load(&identity.1, Some(&identity.0)).unwrap()
}

#[test]
fn rauc_encrypted_bundles_install_with_any_recipients_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pki = common::valid_pki(&dir.join("pki"), KeyKind::EcP256, false);
    let first = recipient(&dir.join("first"), "device one", KeyKind::EcP256);
    let second = recipient(&dir.join("second"), "device two", KeyKind::Rsa2048);
    let stranger = recipient(&dir.join("stranger"), "another device", KeyKind::EcP256);

    let (image, signed, encrypted) =
        common::rauc_encrypted_bundle(dir, &pki, &[&first.0, &second.0]);
    let keyring = common::keyring(&pki.keyring);

    // Signed but not yet enveloped: the key is in the signed manifest; no device key needed.
    let bundle = testudo_updater::bundle::open(&signed, &keyring).unwrap();
    assert_eq!(bundle.manifest.format, BundleFormat::Crypt);
    assert!(!bundle.encrypted_cms);
    bundle.extract(&dir.join("signed-extract")).unwrap();
    assert_eq!(
        std::fs::read(dir.join("signed-extract/rootfs.img")).unwrap(),
        image
    );

    // Enveloped: without a key, and with a stranger's, refused by name; nothing written.
    let device = common::device(
        &dir.join("device"),
        &pki.keyring,
        "gw",
        &common::image(&dir.join("v1.img"), 150_000, 1),
        "1.0",
    );
    let before = device.snapshot();
    let err = testudo_updater::bundle::open(&encrypted, &keyring).unwrap_err();
    assert!(
        matches!(err, UpdaterError::EncryptedBundle { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("give a decryption key"), "{err}");
    let err = testudo_updater::bundle::open_with(&encrypted, &keyring, Some(&decryptor(&stranger)))
        .unwrap_err();
    assert!(
        matches!(err, UpdaterError::DecryptSignature { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not encrypted for this key"),
        "{err}"
    );
    assert_eq!(device.snapshot(), before);

    // Either recipient opens it; the payload decrypts to what rauc extracts.
    for (name, identity) in [("first", &first), ("second", &second)] {
        let bundle =
            testudo_updater::bundle::open_with(&encrypted, &keyring, Some(&decryptor(identity)))
                .unwrap();
        assert!(bundle.encrypted_cms);
        assert_eq!(bundle.manifest.format, BundleFormat::Crypt);
        let ours = dir.join(format!("{name}-extract"));
        bundle.extract(&ours).unwrap();
        let conf = rauc_conf(dir, &pki, Some(identity));
        let theirs = rauc_extract_rootfs(&conf, &encrypted, &dir.join(format!("{name}-rauc")));
        assert_eq!(std::fs::read(ours.join("rootfs.img")).unwrap(), theirs);
        assert_eq!(theirs, image);
    }

    // The install decrypts while it streams into the slot.
    let bundle =
        testudo_updater::bundle::open_with(&encrypted, &keyring, Some(&decryptor(&first))).unwrap();
    let report = device.install("A", &bundle).unwrap();
    assert_eq!(report.bootname, "B");
    let written = std::fs::read(&device.slot_b).unwrap();
    assert_eq!(written[..image.len()], image[..]);
}

#[test]
fn testudo_encrypted_bundles_are_read_by_rauc_and_reproducible_until_enveloped() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pki = common::valid_pki(&dir.join("pki"), KeyKind::EcP256, false);
    let device_identity = recipient(&dir.join("device"), "device one", KeyKind::EcP256);
    let image_path = common::image(&dir.join("rootfs.img"), 400_000, 8);
    let image = std::fs::read(&image_path).unwrap();
    let mut spec = BundleSpec::new("gw", "3.0", vec![("rootfs".into(), image_path)]);
    spec.format = BundleFormat::Crypt;
    let signed = dir.join("ours.raucb");
    common::create_bundle(&spec, &pki, &signed);
    let again = dir.join("ours-again.raucb");
    common::create_bundle(&spec, &pki, &again);
    assert_eq!(
        std::fs::read(&signed).unwrap(),
        std::fs::read(&again).unwrap(),
        "the same input and signer made different crypt bundles"
    );
    // The payload is not the clear squashfs: the image's bytes are nowhere in it.
    let stored = std::fs::read(&signed).unwrap();
    assert!(!stored.windows(64).any(|w| w == &image[1000..1064]));

    let keyring = common::keyring(&pki.keyring);
    let encrypted = dir.join("ours-encrypted.raucb");
    let recipients = crypt::encrypt_bundle(
        &signed,
        &keyring,
        std::slice::from_ref(&device_identity.0),
        &encrypted,
    )
    .unwrap();
    assert_eq!(recipients, 1);

    // rauc reads both: the signed one with no key, the enveloped one with the device's.
    let conf = rauc_conf(dir, &pki, Some(&device_identity));
    for bundle in [&signed, &encrypted] {
        let conf_arg = format!("--conf={}", conf.display());
        let info = common::run("rauc", &[&conf_arg, &"info", &bundle]);
        common::assert_success("rauc info", &info);
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(text.contains("crypt"), "{text}");
    }
    let theirs = rauc_extract_rootfs(&conf, &encrypted, &dir.join("rauc-extract"));
    assert_eq!(theirs, image);

    // And so does testudo.
    let bundle = testudo_updater::bundle::open_with(
        &encrypted,
        &keyring,
        Some(&decryptor(&device_identity)),
    )
    .unwrap();
    bundle.extract(&dir.join("testudo-extract")).unwrap();
    assert_eq!(
        std::fs::read(dir.join("testudo-extract/rootfs.img")).unwrap(),
        image
    );

    // Only crypt bundles are enveloped, as with `rauc encrypt`.
    let mut verity_spec = spec.clone();
    verity_spec.format = BundleFormat::Verity;
    let verity = dir.join("verity.raucb");
    common::create_bundle(&verity_spec, &pki, &verity);
    let err = crypt::encrypt_bundle(
        &verity,
        &keyring,
        std::slice::from_ref(&device_identity.0),
        &dir.join("never.raucb"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("only a format=crypt bundle"),
        "{err}"
    );
    assert!(!dir.join("never.raucb").exists());
}
