#![cfg(feature = "updater")]
//! Promise: `testudo keys init`, `bundle create`, `bundle info` and `bundle extract` work end
//! to end, the real `rauc info` accepts the result, and a tampered bundle makes `info` and
//! `extract` exit 1 with a one-line error (no panic) and write nothing; `bundle create
//! --format crypt` then `bundle encrypt --recipient` make a bundle that `info` and `extract`
//! read only with the recipient's key (`--decrypt-key`).
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod updater_common;

use std::path::Path;

use updater_common::{keyring, ok, testudo};

fn write_image(path: &Path, size: usize) {
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn keys_bundle_info_extract() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = updater_common::keys_init(&keys);
    assert!(out.contains("NOT for production"), "{out}");
    for name in [
        "ca.pem",
        "signing.pem",
        "signing.key",
        "deploy.ed25519",
        "deploy.ed25519.pub",
    ] {
        assert!(keys.join(name).is_file(), "{name} missing");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(keys.join("signing.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "private key readable by others");
    assert!(std::fs::read_to_string(keys.join("deploy.ed25519"))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(std::fs::read_to_string(keys.join("deploy.ed25519.pub"))
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    // A second init refuses to overwrite.
    assert!(!testudo(&[&"keys", &"init", &keys]).status.success());

    let image = dir.path().join("rootfs.ext4");
    write_image(&image, 150_000);
    let bundle = dir.path().join("update.raucb");
    updater_common::bundle_create(&keys, "acme-gw", "2.1.0", &image, &bundle);
    let info = ok(&testudo(&[
        &"bundle",
        &"info",
        &"--keyring",
        &keyring(&keys),
        &bundle,
    ]));
    assert!(info.contains("Compatible:    acme-gw"), "{info}");
    assert!(info.contains("testudo development bundle signer"), "{info}");

    let rauc = updater_common::tool(
        "rauc",
        "rauc",
        &[&"info", &"--keyring", &keyring(&keys), &bundle],
    );
    assert!(
        rauc.status.success(),
        "{}",
        String::from_utf8_lossy(&rauc.stderr)
    );

    let x = dir.path().join("x");
    ok(&testudo(&[
        &"bundle",
        &"extract",
        &"--keyring",
        &keyring(&keys),
        &bundle,
        &x,
    ]));
    assert_eq!(
        std::fs::read(x.join("rootfs.ext4")).unwrap(),
        std::fs::read(&image).unwrap()
    );

    // Tamper with one payload byte.
    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes[6000] ^= 0x80;
    std::fs::write(&bundle, bytes).unwrap();
    for args in [
        vec!["bundle", "info", "--keyring"],
        vec!["bundle", "extract", "--keyring"],
    ] {
        let y = dir.path().join("y");
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args
            .iter()
            .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
            .collect();
        let keyring = keyring(&keys);
        all.push(&keyring);
        all.push(&bundle);
        all.push(&y);
        if args[1] == "info" {
            all.pop();
        }
        let output = testudo(&all);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: bundle rejected: verifying payload"),
            "{stderr}"
        );
        assert!(stderr.contains("does not match"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!y.exists());
    }
}

/// `testudo bundle delta` from `from` to `to` into `out`, signed with the development keys in
/// `keys`; not yet run.
fn bundle_delta(keys: &Path, from: &Path, to: &Path, out: &Path) -> std::process::Command {
    updater_common::testudo_command(&[
        &"bundle",
        &"delta",
        &"--keyring",
        &keyring(keys),
        &"--from",
        &from,
        &"--to",
        &to,
        &"--cert",
        &keys.join("signing.pem"),
        &"--key",
        &keys.join("signing.key"),
        &"-o",
        &out,
    ])
}

#[test]
fn bundle_delta_makes_a_small_bundle_that_info_describes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    updater_common::keys_init(&keys);
    // Two images of whole 4 KiB blocks differing in one region.
    let old = dir.path().join("old").join("rootfs.img");
    let new = dir.path().join("new").join("rootfs.img");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::create_dir_all(new.parent().unwrap()).unwrap();
    // Incompressible, so the full bundle is as large as the image.
    let mut state = 0x9e37_79b9u32;
    let mut bytes: Vec<u8> = (0..512 * 4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(&old, &bytes).unwrap();
    bytes[100_000..100_050].fill(7);
    std::fs::write(&new, bytes).unwrap();
    let (v1, v2) = (dir.path().join("v1.raucb"), dir.path().join("v2.raucb"));
    updater_common::bundle_create(&keys, "acme-gw", "1.0.0", &old, &v1);
    updater_common::bundle_create(&keys, "acme-gw", "1.1.0", &new, &v2);
    let delta = dir.path().join("delta.raucb");
    // Made in a reproducible-build environment (SOURCE_DATE_EPOCH set, as Nix and the image
    // tests set it): the payload's times are pinned anyway.
    let out = ok(&bundle_delta(&keys, &v1, &v2, &delta)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap());
    assert!(out.contains("delta 1.0.0 -> 1.1.0"), "{out}");
    assert!(out.contains("rootfs: patch"), "{out}");
    let full = std::fs::metadata(&v2).unwrap().len();
    let small = std::fs::metadata(&delta).unwrap().len();
    assert!(small * 10 < full, "delta {small} vs full {full}");
    let info = ok(&testudo(&[
        &"bundle",
        &"info",
        &"--keyring",
        &keyring(&keys),
        &delta,
    ]));
    assert!(info.contains("Filename:    rootfs.img.bsdiff"), "{info}");
    assert!(info.contains("Delta base:   sha256"), "{info}");
    assert!(info.contains(&format!("({} bytes)", 512 * 4096)), "{info}");

    // A delta between bundles for different systems is refused with a one-line error.
    let other = dir.path().join("other.raucb");
    updater_common::bundle_create(&keys, "other-gw", "1.1.0", &new, &other);
    let refused = bundle_delta(&keys, &v1, &other, &dir.path().join("bad.raucb"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("compatible"), "{stderr}");
    assert!(!dir.path().join("bad.raucb").exists());
}

#[test]
fn crypt_bundles_are_encrypted_for_a_recipient_and_read_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    updater_common::keys_init(&keys);
    let image = dir.path().join("rootfs.img");
    write_image(&image, 120_000);
    let signed = dir.path().join("crypt.raucb");
    let created =
        updater_common::bundle_create_as(&keys, "crypt", "acme-gw", "1.0.0", &image, &signed);
    assert!(created.contains("crypt bundle"), "{created}");
    // The development signer's certificate doubles as the recipient here.
    let encrypted = dir.path().join("encrypted.raucb");
    let out = ok(&testudo(&[
        &"bundle",
        &"encrypt",
        &"--keyring",
        &keyring(&keys),
        &"--recipient",
        &keys.join("signing.pem"),
        &signed,
        &"-o",
        &encrypted,
    ]));
    assert!(out.contains("for 1 recipient(s)"), "{out}");

    let refused = testudo(&[
        &"bundle",
        &"info",
        &"--keyring",
        &keyring(&keys),
        &encrypted,
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("give a decryption key"), "{stderr}");

    let info = ok(&testudo(&[
        &"bundle",
        &"info",
        &"--keyring",
        &keyring(&keys),
        &"--decrypt-key",
        &keys.join("signing.key"),
        &"--decrypt-cert",
        &keys.join("signing.pem"),
        &encrypted,
    ]));
    assert!(
        info.contains("Bundle format: crypt [encrypted CMS]"),
        "{info}"
    );
    let x = dir.path().join("x");
    ok(&testudo(&[
        &"bundle",
        &"extract",
        &"--keyring",
        &keyring(&keys),
        &"--decrypt-key",
        &keys.join("signing.key"),
        &encrypted,
        &x,
    ]));
    assert_eq!(
        std::fs::read(x.join("rootfs.img")).unwrap(),
        std::fs::read(&image).unwrap()
    );
}
