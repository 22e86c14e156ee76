//! Promise: update.raucb is a RAUC bundle that the real `rauc` verifies against the build's
//! keyring and that carries exactly rootfs.img for slot class `rootfs`, with RAUC's block
//! hash index (`adaptive=block-hash-index;`). The rootfs is stored uncompressed (so deltas
//! between images stay small) and the bundle's payload compresses it (zstd), so the download
//! is smaller than the image.

mod common;

#[test]
fn rauc_verifies_the_bundle_and_extracts_the_same_rootfs() {
    let fx = common::fixture();
    let tools = testudo_images::HostTools::new();
    testudo_images::build(&fx.request, &tools).expect("build");
    let out = &fx.request.out_dir;
    let keyring = fx.request.keys.ca_cert.clone();
    let bundle = out.join("update.raucb");
    let info = common::run(
        "rauc",
        &[
            "info",
            "--keyring",
            common::path_str(&keyring),
            common::path_str(&bundle),
        ],
    );
    assert!(info.contains("testudo-imgtest-qemu-x86_64"), "{info}");
    assert!(info.contains("rootfs.img"), "{info}");
    assert!(info.contains("Adaptive:  block-hash-index"), "{info}");
    let extracted = fx.dir.path().join("extracted");
    common::run(
        "rauc",
        &[
            "extract",
            "--keyring",
            common::path_str(&keyring),
            common::path_str(&bundle),
            common::path_str(&extracted),
        ],
    );
    let a = std::fs::read(extracted.join("rootfs.img")).unwrap();
    let b = std::fs::read(out.join("rootfs.img")).unwrap();
    assert!(a == b, "bundle rootfs differs from rootfs.img");

    let rootfs = common::run(
        "unsquashfs",
        &["-s", common::path_str(&out.join("rootfs.img"))],
    );
    for line in [
        "Data is uncompressed",
        "Inodes are uncompressed",
        "Fragments are uncompressed",
    ] {
        assert!(rootfs.contains(line), "rootfs: {line} expected in {rootfs}");
    }
    let payload = common::run("unsquashfs", &["-s", common::path_str(&bundle)]);
    assert!(payload.contains("Compression zstd"), "{payload}");
    assert!(payload.contains("Data is compressed"), "{payload}");
    let bundle_size = std::fs::metadata(&bundle).unwrap().len();
    assert!(
        bundle_size < b.len() as u64,
        "the bundle ({bundle_size} bytes) does not compress the rootfs ({} bytes)",
        b.len()
    );
}

#[test]
fn a_delta_from_a_published_bundle_is_written_beside_the_full_one() {
    let fx = common::fixture();
    let tools = testudo_images::HostTools::new();
    testudo_images::build(&fx.request, &tools).expect("build");
    let out = &fx.request.out_dir;
    // The published base: this very build's bundle, kept aside (a rebuild of the same
    // config gives a delta of no change).
    let base = fx.dir.path().join("published-update.raucb");
    std::fs::copy(out.join("update.raucb"), &base).unwrap();
    let written =
        testudo_images::deltas::write_deltas(out, &fx.request.keys, &[base]).expect("deltas");
    assert_eq!(written.len(), 1);
    let delta = &written[0];
    assert_eq!(
        delta.path.file_name().unwrap().to_str().unwrap(),
        testudo_images::deltas::delta_file_name(&delta.base_version)
    );
    let full = std::fs::metadata(out.join("update.raucb")).unwrap().len();
    assert!(
        delta.size * 50 < full,
        "delta {} vs full {full}",
        delta.size
    );
    // The real rauc reads it; it names the rootfs image as both base and target.
    let info = common::run(
        "rauc",
        &[
            "info",
            "--keyring",
            common::path_str(&fx.request.keys.ca_cert),
            common::path_str(&delta.path),
        ],
    );
    assert!(info.contains("rootfs.img.bsdiff"), "{info}");
    let keyring = testudo_updater::Keyring::load(
        &fx.request.keys.ca_cert,
        testudo_updater::signature::CheckPurpose::default(),
    )
    .unwrap();
    let opened = testudo_updater::bundle::open(&delta.path, &keyring).unwrap();
    let spec = opened.manifest.images[0].delta.clone().unwrap();
    assert_eq!(spec.base, spec.target);
    let rootfs = std::fs::read(out.join("rootfs.img")).unwrap();
    assert_eq!(
        spec.target,
        testudo_updater::delta::ImageIdentity::of(&rootfs, "rootfs.img").unwrap()
    );
}
