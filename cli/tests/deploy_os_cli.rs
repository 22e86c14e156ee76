#![cfg(all(feature = "deploy", feature = "hub", feature = "updater"))]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns
//! Promise: `testudo deploy os` checks a bundle as a device would, uploads it to the hub's
//! artifact store (the emulator's, trusted through its CA) and sets an Azure Device Update
//! workflow as the device's desired `deviceUpdate`: action 3, a new workflow id each time, a
//! manifest whose signature chain verifies with the keys directory's root JWK set and which
//! names the uploaded bundle's size and sha256 with the bundle's version as installed
//! criteria. A bundle the keyring does not trust is refused before the hub is asked anything.

mod deploy_common;
mod runtime_common;

use std::path::{Path, PathBuf};

use deploy_common::{ok, testudo};
use serde_json::Value;
use testudo_os_update::signature::{verify, RootKeys};
use testudo_os_update::twin::{desired_update, WorkflowAction};

fn twin(state: &Path, device: &str) -> Value {
    let text = ok(testudo()
        .args(["hub", "twin", "--state"])
        .arg(state)
        .arg(device)
        .output()
        .unwrap());
    serde_json::from_str(&text).unwrap()
}

/// A bundle of version `version` signed with the keys in `keys`.
fn bundle(dir: &Path, keys: &Path, version: &str) -> PathBuf {
    let image = format!("a root file system, version {version}\n").repeat(2000);
    bundle_of(dir, keys, version, image.as_bytes())
}

/// A bundle of version `version` holding `image`, signed with the keys in `keys`.
fn bundle_of(dir: &Path, keys: &Path, version: &str, image: &[u8]) -> PathBuf {
    let image_dir = dir.join(format!("image-{version}"));
    std::fs::create_dir_all(&image_dir).unwrap();
    let path = image_dir.join("rootfs.img");
    std::fs::write(&path, image).unwrap();
    let dev = testudo_updater::keys::DevKeys::paths(keys);
    let out = dir.join(format!("update-{version}.raucb"));
    testudo_updater::bundle::create(
        &testudo_updater::BundleSpec::new(
            "testudo-gateway-qemu-x86_64",
            version,
            vec![("rootfs".into(), path)],
        ),
        &dev.signer(),
        &out,
    )
    .unwrap();
    out
}

fn deploy_os(bundle: &Path, keys: &Path, hub: &str, ca: &Path) -> std::process::Output {
    testudo()
        .args(["deploy", "os", "gw-01", "--bundle"])
        .arg(bundle)
        .arg("--keys")
        .arg(keys)
        .args(["--hub", hub, "--ca"])
        .arg(ca)
        .output()
        .unwrap()
}

#[test]
fn deploy_os_sets_a_signed_adu_workflow_and_refuses_an_untrusted_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let setup = deploy_common::hub_with_device(dir.path(), "gw-01");
    let (keys, state, hub) = (&setup.keys, &setup.state, &setup.hub);
    let ca = &setup.ca;
    let roots =
        RootKeys::from_jwks(&std::fs::read(keys.join("update-roots.jwks")).unwrap()).unwrap();

    let mut workflows = Vec::new();
    for version in ["1.1.0", "1.2.0"] {
        let bundle = bundle(dir.path(), keys, version);
        let bytes = std::fs::read(&bundle).unwrap();
        let printed = ok(deploy_os(&bundle, keys, hub, ca));
        assert!(
            printed.contains(&format!(
                "updating gw-01 to testudo-gateway-qemu-x86_64 {version}"
            )),
            "{printed}"
        );
        let desired = twin(state, "gw-01")["properties"]["desired"].clone();
        let update = desired_update(&desired).unwrap().unwrap();
        assert_eq!(update.workflow.action, WorkflowAction::Apply);
        workflows.push(update.workflow.id.clone());
        let verified = verify(
            update.update_manifest.as_deref().unwrap(),
            update.update_manifest_signature.as_deref().unwrap(),
            &roots,
        )
        .unwrap();
        let step = verified.manifest.bundle_step().unwrap();
        assert_eq!(step.installed_criteria, version);
        assert_eq!(step.file.size_in_bytes, bytes.len() as u64);
        let (sha256, _) = testudo_updater::bundle::sha256_file(&bundle).unwrap();
        assert_eq!(step.file.sha256, sha256);
        assert_eq!(verified.manifest.update_id.version, version);
        assert_eq!(
            verified.manifest.compatibility,
            [testudo_os_update::update_scheme::device_compatibility(
                "testudo-gateway-qemu-x86_64"
            )]
        );
        // The bundle is in the emulator's artifact store, where the URL says.
        let url = &update.file_urls[step.file_id];
        let name = url.rsplit('/').next().unwrap();
        assert_eq!(name, hex::encode(sha256));
        assert!(url.contains("/testudo/artifacts/"), "{url}");
        assert_eq!(
            std::fs::read(state.join("artifacts").join(name)).unwrap(),
            bytes
        );
    }
    assert_ne!(
        workflows[0], workflows[1],
        "each deployment is a new workflow"
    );

    // A bundle signed by keys whose CA this keyring does not hold: refused, nothing set.
    let other_keys = dir.path().join("other-keys");
    ok(testudo()
        .args(["keys", "init"])
        .arg(&other_keys)
        .output()
        .unwrap());
    let foreign_dir = dir.path().join("foreign");
    std::fs::create_dir(&foreign_dir).unwrap();
    let foreign = bundle(&foreign_dir, &other_keys, "1.3.0");
    let before = twin(state, "gw-01")["properties"]["desired"]["$version"].clone();
    let refused = deploy_os(&foreign, keys, hub, ca);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("verifying the bundle"), "{stderr}");
    assert_eq!(
        twin(state, "gw-01")["properties"]["desired"]["$version"],
        before
    );
}

#[test]
fn deploy_os_offers_a_delta_as_a_related_file_of_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let setup = deploy_common::hub_with_device(dir.path(), "gw-01");
    let (keys, state, hub) = (&setup.keys, &setup.state, &setup.hub);
    let ca = &setup.ca;
    let base: Vec<u8> = (0..256 * 4096u32)
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let mut new = base.clone();
    new[9000..9100].fill(1);
    let old_bundle = bundle_of(dir.path(), keys, "1.1.0", &base);
    let new_bundle = bundle_of(dir.path(), keys, "1.2.0", &new);
    let dev = testudo_updater::keys::DevKeys::paths(keys);
    let keyring = testudo_updater::Keyring::load(&dev.ca_cert, Default::default()).unwrap();
    let delta = dir.path().join("delta.raucb");
    testudo_updater::delta::create(
        &testudo_updater::bundle::open(&old_bundle, &keyring).unwrap(),
        &testudo_updater::bundle::open(&new_bundle, &keyring).unwrap(),
        &dev.signer(),
        &delta,
    )
    .unwrap();

    let printed = ok(testudo()
        .args(["deploy", "os", "gw-01", "--bundle"])
        .arg(&new_bundle)
        .arg("--delta")
        .arg(&delta)
        .arg("--keys")
        .arg(keys)
        .args(["--hub", hub, "--ca"])
        .arg(ca)
        .output()
        .unwrap());
    assert!(printed.contains("offering delta"), "{printed}");
    let desired = twin(state, "gw-01")["properties"]["desired"].clone();
    let update = desired_update(&desired).unwrap().unwrap();
    let roots =
        RootKeys::from_jwks(&std::fs::read(keys.join("update-roots.jwks")).unwrap()).unwrap();
    let verified = verify(
        update.update_manifest.as_deref().unwrap(),
        update.update_manifest_signature.as_deref().unwrap(),
        &roots,
    )
    .unwrap();
    let step = verified.manifest.bundle_step().unwrap();
    let deltas: Vec<_> = step.file.deltas().collect();
    assert_eq!(deltas.len(), 1, "{deltas:?}");
    let (id, file, source) = deltas[0];
    let base_sha256: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&base).into()
    };
    assert_eq!(
        source, base_sha256,
        "the delta names the image it applies to"
    );
    let (delta_sha256, delta_size) = testudo_updater::bundle::sha256_file(&delta).unwrap();
    assert_eq!(
        (file.sha256, file.size_in_bytes),
        (delta_sha256, delta_size)
    );
    let url = &update.file_urls[id];
    assert_eq!(
        std::fs::read(
            state
                .join("artifacts")
                .join(url.rsplit('/').next().unwrap())
        )
        .unwrap(),
        std::fs::read(&delta).unwrap()
    );

    // A full bundle given as a delta is refused before the hub is asked anything.
    let before = twin(state, "gw-01")["properties"]["desired"]["$version"].clone();
    let refused = testudo()
        .args(["deploy", "os", "gw-01", "--bundle"])
        .arg(&new_bundle)
        .arg("--delta")
        .arg(&old_bundle)
        .arg("--keys")
        .arg(keys)
        .args(["--hub", hub, "--ca"])
        .arg(ca)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is for testudo-gateway-qemu-x86_64 1.1.0"),
        "{stderr}"
    );
    assert_eq!(
        twin(state, "gw-01")["properties"]["desired"]["$version"],
        before
    );
}
