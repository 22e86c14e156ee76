//! Promise: bad bundles are rejected with a clear error naming the failed step, and nothing
//! is written (no extraction output, device files byte-identical).
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::path::{Path, PathBuf};

use testudo_updater::install::InstallOptions;
use testudo_updater::keys::{KeyKind, Validity};
use testudo_updater::signature::{AllowedSigner, CheckPurpose};
use testudo_updater::{BundleFormat, BundleSpec, Keyring, UpdaterError};

struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pki: common::Pki,
    bundle: PathBuf,
    device: common::Device,
}

fn case(format: BundleFormat, compatible: &str, version: &str, signer_validity: Validity) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let pki = common::pki(&root.join("pki"), KeyKind::EcP256, false, signer_validity);
    let v1 = common::image(&root.join("v1.img"), 100_000, 1);
    let v2 = common::image(&root.join("v2.img"), 200_000, 2);
    let bundle = root.join("v2.raucb");
    let mut spec = BundleSpec::new(compatible, version, vec![("rootfs".into(), v2)]);
    spec.format = format;
    // An expired signer cannot sign with our checks off; sign anyway (OpenSSL signs, only
    // verification checks validity).
    common::create_bundle(&spec, &pki, &bundle);
    let device = common::device(&root.join("dev"), &pki.keyring, "gw", &v1, "1.0");
    Case {
        _dir: dir,
        root,
        pki,
        bundle,
        device,
    }
}

fn good(format: BundleFormat) -> Case {
    case(format, "gw", "2.0", Validity::days(5))
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Opening, extracting and installing all fail; returns the open error. Nothing written.
fn rejected(case: &Case, keyring: &Keyring) -> UpdaterError {
    let before = case.device.snapshot();
    let out = case.root.join("extract");
    let err = match testudo_updater::bundle::open(&case.bundle, keyring) {
        Ok(bundle) => {
            // Only install-time checks can fail now: the install must refuse before writing.
            bundle.extract(&out).unwrap();
            std::fs::remove_dir_all(&out).unwrap();
            case.device.install("A", &bundle).unwrap_err()
        }
        Err(err) => err,
    };
    assert!(!out.exists(), "extraction output was written");
    assert!(case.device.snapshot() == before, "device files changed");
    // Display names the step, and the chain carries the cause (no panic, no backtrace).
    assert!(!err.to_string().is_empty());
    err
}

fn keyring(case: &Case) -> Keyring {
    common::keyring(&case.pki.keyring)
}

#[test]
fn tampered_payload_byte() {
    for format in [
        BundleFormat::Verity,
        BundleFormat::Plain,
        BundleFormat::Crypt,
    ] {
        let case = good(format);
        flip(&case.bundle, 5000);
        let err = rejected(&case, &keyring(&case));
        match format {
            // The tree covers the encrypted bytes: a crypt bundle is checked before anything
            // is decrypted.
            BundleFormat::Verity | BundleFormat::Crypt => {
                assert!(matches!(err, UpdaterError::VerifyPayload { .. }), "{err:?}")
            }
            BundleFormat::Plain => assert!(
                matches!(err, UpdaterError::VerifySignature { .. }),
                "{err:?}"
            ),
        }
    }
}

#[test]
fn hash_tree_mismatch() {
    let case = good(BundleFormat::Verity);
    let bundle = testudo_updater::bundle::open(&case.bundle, &keyring(&case)).unwrap();
    flip(&case.bundle, bundle.squashfs_size + 7);
    let err = rejected(&case, &keyring(&case));
    assert!(matches!(err, UpdaterError::VerifyPayload { .. }), "{err:?}");
    assert!(err.to_string().contains("hash tree"), "{err}");
}

#[test]
fn tampered_manifest() {
    let case = good(BundleFormat::Verity);
    let mut bytes = std::fs::read(&case.bundle).unwrap();
    let (payload, _) = common::bundle_layout(&bytes);
    let at = bytes[payload as usize..]
        .windows(11)
        .position(|w| w == b"version=2.0")
        .expect("manifest inside the CMS")
        + payload as usize;
    bytes[at + 8] = b'9';
    std::fs::write(&case.bundle, bytes).unwrap();
    let err = rejected(&case, &keyring(&case));
    assert!(
        matches!(err, UpdaterError::VerifySignature { .. }),
        "{err:?}"
    );
}

#[test]
fn tampered_signature_byte() {
    for format in [BundleFormat::Verity, BundleFormat::Plain] {
        let case = good(format);
        let len = std::fs::metadata(&case.bundle).unwrap().len();
        // The last bytes of the CMS are the signature value.
        flip(&case.bundle, len - 8 - 3);
        let err = rejected(&case, &keyring(&case));
        assert!(
            matches!(err, UpdaterError::VerifySignature { .. }),
            "{err:?}"
        );
    }
}

#[test]
fn truncated_signature() {
    let case = good(BundleFormat::Verity);
    let mut bytes = std::fs::read(&case.bundle).unwrap();
    let (payload, sig) = common::bundle_layout(&bytes);
    // Drop the last 40 bytes of the CMS and fix the trailer: a short, broken CMS.
    let mut cut = bytes[..(payload + sig - 40) as usize].to_vec();
    cut.extend_from_slice(&(sig - 40).to_be_bytes());
    std::fs::write(&case.bundle, &cut).unwrap();
    let err = rejected(&case, &keyring(&case));
    assert!(
        matches!(err, UpdaterError::VerifySignature { .. }),
        "{err:?}"
    );
    // Trailer larger than the file.
    bytes.truncate(bytes.len() - 8);
    bytes.extend_from_slice(&(bytes.len() as u64 + 1).min(60_000).to_be_bytes());
    let small: Vec<u8> = bytes[bytes.len() - 1000..].to_vec();
    std::fs::write(&case.bundle, small).unwrap();
    let err = rejected(&case, &keyring(&case));
    assert!(matches!(err, UpdaterError::BundleFormat { .. }), "{err:?}");
}

#[test]
fn truncated_file() {
    for keep in [4usize, 4096, 50_000] {
        let case = good(BundleFormat::Verity);
        let bytes = std::fs::read(&case.bundle).unwrap();
        std::fs::write(&case.bundle, &bytes[..keep]).unwrap();
        let err = rejected(&case, &keyring(&case));
        assert!(
            matches!(
                err,
                UpdaterError::BundleFormat { .. } | UpdaterError::VerifySignature { .. }
            ),
            "{keep}: {err:?}"
        );
    }
}

#[test]
fn oversized_signature() {
    let case = good(BundleFormat::Verity);
    let mut bytes = std::fs::read(&case.bundle).unwrap();
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(&(64 * 1024 + 1u64).to_be_bytes());
    std::fs::write(&case.bundle, &bytes).unwrap();
    let err = rejected(&case, &keyring(&case));
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

#[test]
fn wrong_keyring() {
    let case = good(BundleFormat::Verity);
    let other = common::simple_pki(&case.root.join("other-pki"));
    let err = rejected(&case, &common::keyring(&other.keyring));
    assert!(
        matches!(err, UpdaterError::VerifySignature { .. }),
        "{err:?}"
    );
    let chain = format!("{:?}", std::error::Error::source(&err));
    assert!(
        chain.contains("certificate verify error") || chain.contains("unable to get"),
        "{chain}"
    );
}

#[test]
fn expired_signer() {
    let case = case(
        BundleFormat::Verity,
        "gw",
        "2.0",
        Validity {
            not_before: -10 * 86_400,
            not_after: -86_400,
        },
    );
    let err = rejected(&case, &keyring(&case));
    assert!(
        matches!(err, UpdaterError::VerifySignature { .. }),
        "{err:?}"
    );
    let chain = format!("{:?}", std::error::Error::source(&err));
    assert!(chain.contains("expired"), "{chain}");
}

#[test]
fn signer_rules() {
    let case = good(BundleFormat::Verity);
    let mut restricted = keyring(&case);
    restricted.allow_signer(AllowedSigner::CommonName("release signer".into()));
    let err = rejected(&case, &restricted);
    assert!(
        matches!(err, UpdaterError::SignerNotAllowed { .. }),
        "{err:?}"
    );
    let codesign = Keyring::load(&case.pki.keyring, CheckPurpose::CodeSign).unwrap();
    let err = rejected(&case, &codesign);
    assert!(
        matches!(err, UpdaterError::SignerNotAllowed { .. }),
        "{err:?}"
    );
    let mut allowed = keyring(&case);
    allowed.allow_signer(AllowedSigner::CommonName("test signer".into()));
    testudo_updater::bundle::open(&case.bundle, &allowed).unwrap();
}

#[test]
fn other_compatible() {
    let case = case(BundleFormat::Verity, "other-gw", "2.0", Validity::days(5));
    let err = rejected(&case, &keyring(&case));
    assert!(matches!(err, UpdaterError::Incompatible { .. }), "{err:?}");
}

#[test]
fn downgrade_refused_unless_allowed() {
    let case = case(BundleFormat::Verity, "gw", "0.9", Validity::days(5));
    let err = rejected(&case, &keyring(&case));
    assert!(matches!(err, UpdaterError::Downgrade { .. }), "{err:?}");
    let bundle = testudo_updater::bundle::open(&case.bundle, &keyring(&case)).unwrap();
    let options = InstallOptions {
        allow_downgrade: true,
        ..InstallOptions::default()
    };
    case.device.install_with("A", &bundle, &options).unwrap();
}

/// In `root`: a PKI, a bundle of image v2 (2.0) whose payload mksquashfs made with
/// `compression`, and a device running v1 (1.0). Returns them and v2's path.
fn compressed_bundle(
    root: &Path,
    format: BundleFormat,
    compression: &[&str],
) -> (common::Pki, PathBuf, common::Device, PathBuf) {
    let pki = common::pki(&root.join("pki"), KeyKind::EcP256, false, Validity::days(5));
    let v1 = common::image(&root.join("v1.img"), 100_000, 1);
    let v2 = common::image(&root.join("v2.img"), 200_000, 2);
    let bundle_path = root.join("v2.raucb");
    let mut spec = BundleSpec::new("gw", "2.0", vec![("rootfs".into(), v2.clone())]);
    spec.format = format;
    spec.mksquashfs_args = compression.iter().map(|a| (*a).to_owned()).collect();
    common::create_bundle(&spec, &pki, &bundle_path);
    let device = common::device(&root.join("dev"), &pki.keyring, "gw", &v1, "1.0");
    (pki, bundle_path, device, v2)
}

#[test]
fn payload_compressed_with_a_compressor_the_reader_lacks() {
    // A signed, intact bundle whose squashfs is xz-compressed: the in-process reader reads
    // gzip, zstd and stored data only, so the bundle is refused naming the compressor when it is
    // opened; nothing is written.
    for format in [BundleFormat::Verity, BundleFormat::Plain] {
        let dir = tempfile::tempdir().unwrap();
        let (pki, bundle_path, device, _) = compressed_bundle(dir.path(), format, &["-comp", "xz"]);
        let before = device.snapshot();
        // Refused when the bundle is opened, before an install could mark a slot: verity
        // bundles (manifest in the signature) and plain ones (manifest in the payload) alike.
        let err = testudo_updater::bundle::open(&bundle_path, &common::keyring(&pki.keyring))
            .unwrap_err();
        assert!(device.snapshot() == before, "device files changed");
        let UpdaterError::PayloadCompressor { path, compressor } = &err else {
            panic!("{format:?}: {err:?}");
        };
        assert_eq!((path, compressor.as_str()), (&bundle_path, "xz"));
        assert!(err.to_string().contains("only gzip, zstd"), "{err}");
    }
}

#[test]
fn zstd_payloads_are_read_and_installed() {
    // What the image builder writes: the uncompressed rootfs in a zstd-compressed payload.
    let dir = tempfile::tempdir().unwrap();
    let (pki, bundle_path, device, v2) = compressed_bundle(
        dir.path(),
        BundleFormat::Verity,
        &["-comp", "zstd", "-Xcompression-level", "3"],
    );
    let superblock = common::run("unsquashfs", &[&"-s", &bundle_path]);
    assert!(
        String::from_utf8_lossy(&superblock.stdout).contains("Compression zstd"),
        "{superblock:?}"
    );
    let bundle =
        testudo_updater::bundle::open(&bundle_path, &common::keyring(&pki.keyring)).unwrap();
    device.install("A", &bundle).unwrap();
    assert_eq!(
        std::fs::read(&device.slot_b).unwrap(),
        std::fs::read(&v2).unwrap()
    );
}

/// The open that shows the caller every byte (for an OS update's own file digest) sees the
/// whole file once, in order, and refuses what `open` refuses.
#[test]
fn the_observed_open_sees_the_whole_file_once_and_refuses_the_same() {
    for format in [BundleFormat::Verity, BundleFormat::Plain] {
        let case = good(format);
        let mut seen = Vec::new();
        testudo_updater::bundle::open_observed(&case.bundle, &keyring(&case), None, &mut |bytes| {
            seen.extend_from_slice(bytes)
        })
        .unwrap();
        assert!(
            seen == std::fs::read(&case.bundle).unwrap(),
            "{format:?}: the observer saw {} bytes, not the file",
            seen.len()
        );

        flip(&case.bundle, 10);
        let err = testudo_updater::bundle::open_observed(
            &case.bundle,
            &keyring(&case),
            None,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                UpdaterError::VerifyPayload { .. } | UpdaterError::VerifySignature { .. }
            ),
            "{format:?}: {err:?}"
        );
    }
}
