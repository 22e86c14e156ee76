//! Promise: creating a bundle twice from the same image (different file times, file modes
//! and output directories) gives byte-identical payloads (squashfs + hash tree) and
//! manifests; the payload digest `create` reports is that of those bytes, and
//! `bundle::payload_sha256` reads the same digest back from the bundle file; a
//! caller-supplied image digest is used as given (a wrong size is refused).
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use sha2::Digest as _;
use testudo_updater::{BundleFormat, BundleSpec};

fn payload_of(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let (payload, _) = common::bundle_layout(&bytes);
    bytes.truncate(payload as usize);
    bytes
}

#[test]
fn same_input_same_payload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    for format in [BundleFormat::Verity, BundleFormat::Plain] {
        let mut payloads = Vec::new();
        let mut manifests = Vec::new();
        for run in 0..2 {
            let run_dir = dir.path().join(format!("{}-{run}", format.as_str()));
            std::fs::create_dir(&run_dir).unwrap();
            let image = common::image(&run_dir.join("rootfs.img"), 150_000, 4);
            let file = std::fs::File::options().write(true).open(&image).unwrap();
            file.set_modified(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000 * (run + 1)),
            )
            .unwrap();
            // The payload pins modes: the image's own mode does not reach it.
            let mode = if run == 0 { 0o600 } else { 0o664 };
            let permissions: std::fs::Permissions =
                std::os::unix::fs::PermissionsExt::from_mode(mode);
            std::fs::set_permissions(&image, permissions).unwrap();
            let mut spec = BundleSpec::new("gw", "1.0", vec![("rootfs".into(), image)]);
            spec.format = format;
            let out = run_dir.join("b.raucb");
            let created = common::create_bundle(&spec, &pki, &out);
            let payload = payload_of(&out);
            assert_eq!(created.payload_size, payload.len() as u64, "{format:?}");
            assert_eq!(
                created.payload_sha256,
                <[u8; 32]>::from(sha2::Sha256::digest(&payload)),
                "{format:?}: reported payload digest"
            );
            assert_eq!(
                testudo_updater::bundle::payload_sha256(&out).unwrap(),
                (created.payload_sha256, created.payload_size),
                "{format:?}: payload digest read back"
            );
            manifests.push(created.manifest);
            payloads.push(payload);
        }
        assert_eq!(manifests[0], manifests[1], "{format:?}");
        assert!(
            payloads[0] == payloads[1],
            "{format:?}: payload bytes differ between runs"
        );
    }
}

#[test]
fn known_image_digest_is_used_and_its_size_checked() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::simple_pki(&dir.path().join("pki"));
    let image = common::image(&dir.path().join("rootfs.img"), 150_000, 4);
    let size = std::fs::metadata(&image).unwrap().len();
    let mut spec = BundleSpec::new("gw", "1.0", vec![("rootfs".into(), image.clone())]);

    // Taken as given: the manifest carries the caller's digest (a real caller passes the
    // true one; a made-up one shows the file was not re-read).
    spec.known_digests.insert(image.clone(), ([7; 32], size));
    let created = common::create_bundle(&spec, &pki, &dir.path().join("known.raucb"));
    assert_eq!(created.manifest.images[0].sha256, [7; 32]);

    spec.known_digests
        .insert(image.clone(), ([7; 32], size + 1));
    let err = testudo_updater::bundle::create(&spec, &pki.signer, &dir.path().join("bad.raucb"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rootfs.img") && err.contains(&size.to_string()),
        "{err}"
    );
    assert!(!dir.path().join("bad.raucb").exists());
}
