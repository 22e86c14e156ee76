//! Promise: creating a bundle twice from the same image (different file times, different
//! output directories) gives byte-identical payloads (squashfs + hash tree) and manifests;
//! only the CMS signature differs (ECDSA nonce, signing time).
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

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
            let mut spec = BundleSpec::new("gw", "1.0", vec![("rootfs".into(), image)]);
            spec.format = format;
            let out = run_dir.join("b.raucb");
            manifests.push(common::create_bundle(&spec, &pki, &out));
            payloads.push(payload_of(&out));
        }
        assert_eq!(manifests[0], manifests[1], "{format:?}");
        assert!(
            payloads[0] == payloads[1],
            "{format:?}: payload bytes differ between runs"
        );
    }
}
