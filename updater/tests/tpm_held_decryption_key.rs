//! Promise: a device whose decryption key lives in a TPM (a real software TPM, swtpm; the key
//! made inside it through OpenSSL's tpm2 provider, its file only the TPM-wrapped blob) opens
//! and installs bundles `rauc encrypt` made for its certificate — an EC P-256 key and an RSA
//! key, each one of two recipients — with the key agreement or decryption done in the TPM. The
//! key file alone is no key: OpenSSL cannot load it without the TPM, and once the TPM is gone
//! the bundle no longer opens. A TPM key the bundle was not encrypted for is refused.
//!
//! One test function: OpenSSL's tpm2 provider reads its TCTI once per process.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use testudo_testkit::swtpm::Swtpm;

use testudo_updater::crypt::Decryptor;
use testudo_updater::keys::KeyKind;
use testudo_updater::{BundleFormat, UpdaterError};

/// The provider module `tpm2-openssl` installs.
const TPM2_PROVIDER: &str = "/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so";

/// `openssl` with the tpm2 provider on `tpm`; panics with its stderr on failure.
fn openssl_tpm(tpm: &Swtpm, args: &[&str]) {
    let output = Command::new("openssl")
        .args(&args[..1])
        .args(["-provider", "tpm2", "-provider", "default"])
        .args(&args[1..])
        .env("TPM2OPENSSL_TCTI", &tpm.tcti)
        .output()
        .unwrap();
    common::assert_success(&format!("openssl {}", args.join(" ")), &output);
}

/// A key made inside the TPM (`algorithm` options for genpkey) and a self-signed certificate
/// for it: `(cert, key)`.
fn tpm_identity(tpm: &Swtpm, dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.tss2.pem"));
    let cert = dir.join(format!("{name}.cert.pem"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend(["-out", key.to_str().unwrap()]);
    openssl_tpm(tpm, &args);
    let subject = format!("/CN={name}");
    openssl_tpm(
        tpm,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "5",
            "-subj",
            &subject,
            "-key",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    (cert, key)
}

const EC: &[&str] = &["-algorithm", "EC", "-pkeyopt", "group:P-256"];
const RSA: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "bits:2048"];

#[test]
fn a_tpm_held_key_opens_and_installs_bundles_encrypted_for_it_and_never_leaves_the_tpm() {
    assert!(
        Path::new(TPM2_PROVIDER).exists(),
        "OpenSSL's tpm2 provider {TPM2_PROVIDER} is required: install Debian package \
         `tpm2-openssl` (`cargo xtask deps` installs every test dependency)"
    );
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tpm = testudo_testkit::swtpm::start();
    // SAFETY: the only test of this binary, before any thread of it reads the environment;
    // the provider reads the TCTI when it is first loaded.
    unsafe { std::env::set_var("TPM2OPENSSL_TCTI", &tpm.tcti) };
    let ec = tpm_identity(&tpm, dir, "ec-device", EC);
    let rsa = tpm_identity(&tpm, dir, "rsa-device", RSA);
    let stranger = tpm_identity(&tpm, dir, "stranger", EC);

    // The key files are TPM-wrapped blobs: OpenSSL alone cannot load them.
    for key in [&ec.1, &rsa.1] {
        let pem = std::fs::read_to_string(key).unwrap();
        assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"), "{pem}");
        let alone = Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(key)
            .output()
            .unwrap();
        assert!(
            !alone.status.success(),
            "{} loads without the TPM",
            key.display()
        );
    }

    // A bundle `rauc encrypt` makes for both devices.
    let pki = common::valid_pki(&dir.join("pki"), KeyKind::EcP256, false);
    let (image, _, encrypted) = common::rauc_encrypted_bundle(dir, &pki, &[&ec.0, &rsa.0]);
    let keyring = common::keyring(&pki.keyring);

    // Each device's TPM key opens it; the install decrypts while it streams into the slot.
    for (name, identity) in [("ec", &ec), ("rsa", &rsa)] {
        let decryptor = Decryptor::load(&identity.1, Some(&identity.0)).unwrap();
        assert!(decryptor.in_tpm());
        let bundle =
            testudo_updater::bundle::open_with(&encrypted, &keyring, Some(&decryptor)).unwrap();
        assert!(bundle.encrypted_cms, "{name}");
        assert_eq!(bundle.manifest.format, BundleFormat::Crypt);
        let device = common::device(
            &dir.join(format!("{name}-device")),
            &pki.keyring,
            "gw",
            &common::image(&dir.join("v1.img"), 150_000, 1),
            "1.0",
        );
        let report = device.install("A", &bundle).unwrap();
        assert_eq!(report.bootname, "B");
        let written = std::fs::read(&device.slot_b).unwrap();
        assert_eq!(written[..image.len()], image[..], "{name}");
    }

    // A TPM key the bundle was not made for is refused, naming it.
    let decryptor = Decryptor::load(&stranger.1, Some(&stranger.0)).unwrap();
    let err =
        testudo_updater::bundle::open_with(&encrypted, &keyring, Some(&decryptor)).unwrap_err();
    assert!(
        matches!(err, UpdaterError::DecryptEnvelope { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("stranger.tss2.pem"), "{err}");

    // Without the TPM the key file opens nothing.
    drop(tpm);
    let opened = Decryptor::load(&ec.1, Some(&ec.0)).and_then(|decryptor| {
        testudo_updater::bundle::open_with(&encrypted, &keyring, Some(&decryptor))
    });
    assert!(opened.is_err(), "the bundle opened with the TPM gone");
}
