//! Promise: bundles that use what else `rauc` 1.8 offers — install hooks, a custom handler
//! and an image variant; casync indexes (`rauc convert`) — are handled the way rauc handles
//! them as far as testudo goes: `info` agrees with `rauc info` field for field, `extract`
//! writes what `rauc extract` writes (every file, byte for byte, with its mode), and an
//! install refuses each by name before it writes anything (bundle programs on a system that
//! does not allow them, the default; any chunk store). Encrypted bundles:
//! `encrypted_bundles.rs`; running bundle programs where allowed: `bundle_programs.rs`.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use testudo_updater::keys::KeyKind;
use testudo_updater::manifest::{BundleHook, Handler, ImageHook};
use testudo_updater::UpdaterError;

/// A bundle content directory with the extras rauc bundles may carry: a hook program, a
/// handler, a file in a subdirectory; `manifest` is the manifest's text.
fn content_with_programs(dir: &Path, manifest: &str) -> PathBuf {
    let content = dir.join("content");
    std::fs::create_dir_all(content.join("extra")).unwrap();
    common::image(&content.join("rootfs.img"), 300_000, 3);
    common::image(&content.join("app.img"), 5_000, 4);
    for script in ["hook.sh", "handler.sh"] {
        let path = content.join(script);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(content.join("extra/note.txt"), "carried along\n").unwrap();
    std::fs::write(content.join("manifest.raucm"), manifest).unwrap();
    content
}

const PROGRAMS_MANIFEST: &str = "[update]\ncompatible=gw\nversion=2.0\n\n[bundle]\nformat=verity\n\n\
[hooks]\nfilename=hook.sh\nhooks=install-check;\n\n[handler]\nfilename=handler.sh\nargs=--flag\n\n\
[image.rootfs]\nfilename=rootfs.img\nhooks=pre-install;post-install;\n\n[image.appfs.v2]\nfilename=app.img\n";

/// `rauc info --output-format=shell`, as variable → value.
fn rauc_info(pki: &common::Pki, bundle: &Path) -> BTreeMap<String, String> {
    let keyring = format!("--keyring={}", pki.keyring.display());
    let output = common::run(
        "rauc",
        &[&keyring, &"info", &"--output-format=shell", &bundle],
    );
    common::assert_success("rauc info", &output);
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.trim_matches('\'').to_string()))
        .collect()
}

/// `rauc extract` of `bundle` into the new directory `out`.
fn rauc_extract(pki: &common::Pki, bundle: &Path, out: &Path) {
    let keyring = format!("--keyring={}", pki.keyring.display());
    let output = common::run("rauc", &[&keyring, &"extract", &bundle, &out]);
    common::assert_success("rauc extract", &output);
}

/// Every entry under `dir`: relative path → (permission bits, contents; `None` for a
/// directory).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let contents = if meta.is_dir() {
                pending.push(path.clone());
                None
            } else {
                Some(std::fs::read(&path).unwrap())
            };
            let relative = path.strip_prefix(dir).unwrap().to_path_buf();
            entries.insert(relative, (meta.permissions().mode() & 0o777, contents));
        }
    }
    entries
}

/// testudo's view of the bundle's images against `rauc info`'s, field by field.
fn assert_info_agrees(bundle: &testudo_updater::VerifiedBundle, rauc: &BTreeMap<String, String>) {
    let manifest = &bundle.manifest;
    assert_eq!(rauc["RAUC_MF_COMPATIBLE"], manifest.compatible);
    assert_eq!(
        rauc["RAUC_MF_VERSION"],
        manifest.version.clone().unwrap_or_default()
    );
    let hooks: Vec<String> = manifest.hooks.iter().map(ToString::to_string).collect();
    assert_eq!(rauc["RAUC_MF_HOOKS"], hooks.join(" "));
    assert_eq!(rauc["RAUC_MF_IMAGES"], manifest.images.len().to_string());
    for (index, image) in manifest.images.iter().enumerate() {
        let field = |name: &str| rauc[&format!("RAUC_IMAGE_{name}_{index}")].clone();
        assert_eq!(field("NAME"), image.filename);
        assert_eq!(field("CLASS"), image.slot_class);
        assert_eq!(field("VARIANT"), image.variant.clone().unwrap_or_default());
        assert_eq!(field("DIGEST"), hex::encode(image.sha256));
        assert_eq!(field("SIZE"), image.size.to_string());
        let hooks: Vec<String> = image.hooks.iter().map(ToString::to_string).collect();
        assert_eq!(field("HOOKS"), hooks.join(" "));
    }
}

/// testudo's extract of `bundle` and rauc's give the same files, modes and bytes.
fn assert_extract_agrees(
    dir: &Path,
    pki: &common::Pki,
    bundle_path: &Path,
    bundle: &testudo_updater::VerifiedBundle,
) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    let ours = dir.join("testudo-extract");
    let files = bundle.extract(&ours).unwrap();
    let theirs = dir.join("rauc-extract");
    rauc_extract(pki, bundle_path, &theirs);
    let extracted = tree(&ours);
    assert_eq!(extracted, tree(&theirs));
    assert_eq!(
        files,
        extracted
            .values()
            .filter(|(_, bytes)| bytes.is_some())
            .count()
    );
    extracted
}

/// A device running slot A with `v1`, for bundles of compatible `gw`.
fn device(dir: &Path, pki: &common::Pki) -> common::Device {
    let v1 = common::image(&dir.join("v1.img"), 150_000, 1);
    common::device(&dir.join("device"), &pki.keyring, "gw", &v1, "1.0")
}

#[test]
fn hooks_handler_and_variant_are_shown_extracted_and_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::valid_pki(&dir.path().join("pki"), KeyKind::EcP256, false);
    let content = content_with_programs(dir.path(), PROGRAMS_MANIFEST);
    let bundle_path = dir.path().join("programs.raucb");
    common::rauc_bundle(&pki, &content, &bundle_path);

    let bundle = common::open_bundle(&bundle_path, &pki);
    assert_info_agrees(&bundle, &rauc_info(&pki, &bundle_path));
    // What rauc parses but `rauc info` does not print.
    assert_eq!(bundle.manifest.hooks, [BundleHook::InstallCheck]);
    assert_eq!(bundle.manifest.hooks_filename.as_deref(), Some("hook.sh"));
    assert_eq!(
        bundle.manifest.handler,
        Some(Handler {
            filename: "handler.sh".into(),
            args: Some("--flag".into())
        })
    );
    assert_eq!(
        bundle.manifest.images[0].hooks,
        [ImageHook::PreInstall, ImageHook::PostInstall]
    );

    let extracted = assert_extract_agrees(dir.path(), &pki, &bundle_path, &bundle);
    assert_eq!(extracted[Path::new("hook.sh")].0, 0o755);
    assert!(extracted.contains_key(Path::new("extra/note.txt")));
    // The manifest as the payload holds it: what `rauc bundle` wrote, not a re-rendering.
    let manifest = extracted[Path::new("manifest.raucm")].1.clone().unwrap();
    assert!(String::from_utf8(manifest)
        .unwrap()
        .contains("[handler]\nfilename=handler.sh\n"));

    let device = device(dir.path(), &pki);
    let before = device.snapshot();
    let err = device.install("A", &bundle).unwrap_err();
    match &err {
        UpdaterError::BundlePrograms { scripts } => assert_eq!(
            scripts,
            &[
                "install-check hook",
                "pre-install hook of [image.rootfs]",
                "post-install hook of [image.rootfs]",
                "handler handler.sh"
            ]
        ),
        other => panic!("expected the bundle's programs to be refused, got {other:?}"),
    }
    assert!(err.to_string().contains("runs none here"), "{err}");
    assert_eq!(
        device.snapshot(),
        before,
        "the refused install wrote something"
    );
}

#[test]
fn casync_bundles_are_shown_extracted_and_refused_by_name() {
    common::require("casync");
    let dir = tempfile::tempdir().unwrap();
    let pki = common::valid_pki(&dir.path().join("pki"), KeyKind::EcP256, false);
    let content = dir.path().join("content");
    std::fs::create_dir(&content).unwrap();
    common::image(&content.join("rootfs.img"), 2_000_000, 5);
    std::fs::write(
        content.join("manifest.raucm"),
        "[update]\ncompatible=gw\nversion=2.0\n\n[image.rootfs]\nfilename=rootfs.img\n",
    )
    .unwrap();
    let source = dir.path().join("source.raucb");
    common::rauc_bundle(&pki, &content, &source);
    let bundle_path = dir.path().join("casync.raucb");
    let keyring = format!("--keyring={}", pki.keyring.display());
    let output = common::run(
        "rauc",
        &[
            &keyring,
            &"convert",
            &"--cert",
            &pki.signer.cert,
            &"--key",
            &pki.signer.key,
            &source,
            &bundle_path,
        ],
    );
    common::assert_success("rauc convert", &output);
    assert!(dir.path().join("casync.castr").is_dir(), "no chunk store");

    let bundle = common::open_bundle(&bundle_path, &pki);
    assert_info_agrees(&bundle, &rauc_info(&pki, &bundle_path));
    let index = &bundle.manifest.images[0];
    assert_eq!(index.filename, "rootfs.img.caibx");
    assert!(index.is_casync_index());
    assert_eq!(
        index.size, 2_000_000,
        "the size is the image's, not the index's"
    );

    let extracted = assert_extract_agrees(dir.path(), &pki, &bundle_path, &bundle);
    let index_bytes = extracted[Path::new("rootfs.img.caibx")].1.clone().unwrap();
    assert!(index_bytes.len() < 2_000_000);

    let device = device(dir.path(), &pki);
    let before = device.snapshot();
    let err = device.install("A", &bundle).unwrap_err();
    assert!(
        matches!(&err, UpdaterError::CasyncBundle { filename } if filename == "rootfs.img.caibx"),
        "{err:?}"
    );
    assert!(err.to_string().contains("casync index"), "{err}");
    assert_eq!(
        device.snapshot(),
        before,
        "the refused install wrote something"
    );
}
