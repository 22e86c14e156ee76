//! Promise: a build writes rootfs.img, disk.img, update.raucb and manifest.json, and the
//! signed manifest lists every output with its true hash and size (disk.img as a map of its
//! data ranges that the image checks against).

mod common;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use testudo_images::builder::{bundle_payload_digest, BUNDLE, DISK_IMG, MANIFEST, ROOTFS_IMG};
use testudo_images::digest::file_digest;
use testudo_images::manifest;

#[test]
fn manifest_is_signed_and_matches_every_output() {
    let fx = common::fixture();
    let tools = testudo_images::HostTools::new();
    let report = testudo_images::build(&fx.request, &tools).expect("build");
    let out = &fx.request.out_dir;
    for name in [ROOTFS_IMG, DISK_IMG, BUNDLE, MANIFEST] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let pem = std::fs::read_to_string(&fx.request.keys.deploy_key).unwrap();
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let bytes = std::fs::read(out.join(MANIFEST)).unwrap();
    let m = manifest::verify(&bytes, &out.join(MANIFEST), Some(&key.verifying_key()))
        .expect("signature verifies");
    assert_eq!(m.system.name, "imgtest");
    assert_eq!(m.source_date_epoch, 1_700_000_000);
    let listed = m
        .outputs
        .iter()
        .find(|e| e.name == ROOTFS_IMG)
        .expect("listed");
    let actual = file_digest(&out.join(ROOTFS_IMG)).unwrap();
    assert_eq!(
        (listed.sha256.as_str(), listed.size),
        (actual.sha256.as_str(), actual.size)
    );
    // disk.img: its entry pins the disk map, and the image matches the map range by range
    // (and is zero everywhere else).
    let listed = m
        .outputs
        .iter()
        .find(|e| e.name == DISK_IMG)
        .expect("listed");
    assert_eq!(
        (listed.sha256.as_str(), listed.size),
        (m.disk.digest().sha256.as_str(), m.disk.size)
    );
    assert_eq!(m.disk.check(&out.join(DISK_IMG)).unwrap(), None);
    let rootfs_range = m
        .disk
        .ranges
        .iter()
        .find(|r| r.name == "rootfs-a")
        .expect("slot A");
    assert_eq!(rootfs_range.sha256, actual.sha256);
    let bundle = m
        .outputs
        .iter()
        .find(|e| e.name == BUNDLE)
        .expect("bundle listed");
    let payload = bundle_payload_digest(&out.join(BUNDLE)).unwrap();
    assert_eq!(bundle.sha256, payload.sha256);
    for input in [
        "plan",
        "busybox",
        "binary:testudo-init",
        "binary:testudo-log",
        "app:apps/app.wasm",
    ] {
        assert!(
            m.inputs.iter().any(|e| e.name == input),
            "input {input} not listed"
        );
    }
    assert!(m
        .inputs
        .iter()
        .any(|e| e.name.starts_with("library:") && e.name.contains("libc.so")));
    assert!(m.rootfs.iter().any(|e| e.name == "/etc/testudo/plan.json"));
    assert!(m.rootfs.iter().any(|e| e.name == "/apps/apps/app.wasm"));
    // The report names the same outputs.
    assert!(report.outputs.iter().any(|e| e.name == MANIFEST));
    // A flipped byte in the manifest is caught.
    let mut tampered = bytes.clone();
    let pos = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[pos] = b'2';
    assert!(manifest::verify(&tampered, &out.join(MANIFEST), None).is_err());
}
