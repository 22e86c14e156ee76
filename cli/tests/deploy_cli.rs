#![cfg(all(feature = "deploy", feature = "hub", feature = "updater"))]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns
//! Promise: `testudo deploy app` signs a deployment of a module into a slot of the device's
//! system and sets it as the device's desired properties through the hub's service API (the
//! emulator, trusted through its CA), with a serial one more than the last one each time;
//! the token verifies with the deploy public key and says what was deployed. A slot the
//! config does not have, a version devices would refuse, or a hub whose certificate is not
//! trusted, is refused with a clear line and changes nothing. `testudo deploy remove` signs a
//! removal with the next serial. `--uses` narrows the routes to those named; a name the slot
//! does not have is refused. `testudo deploy status` says what the device reported.

mod deploy_common;
mod runtime_common;

use std::path::Path;
use std::process::Output;

use deploy_common::{ok, testudo};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn twin(state: &Path, device: &str) -> Value {
    let text = ok(testudo()
        .args(["hub", "twin", "--state"])
        .arg(state)
        .arg(device)
        .output()
        .unwrap());
    serde_json::from_str(&text).unwrap()
}

fn deploy(keys: &Path, module: &Path, ca: &Path, hub: &str, slot: &str) -> Output {
    deploy_version(keys, module, ca, hub, slot, "1.2.0", &[])
}

/// `testudo deploy app gw-01` of `module` as `version` into `slot`, with `extra` arguments.
fn deploy_version(
    keys: &Path,
    module: &Path,
    ca: &Path,
    hub: &str,
    slot: &str,
    version: &str,
    extra: &[&str],
) -> Output {
    testudo()
        .args(["deploy", "app", "gw-01", "--slot", slot, "--module"])
        .arg(module)
        .args(["--app-version", version])
        .args(extra)
        .arg("--config")
        .arg(repo().join("system-config/examples/gateway.ncl"))
        .arg("--keys")
        .arg(keys)
        .args([
            "--url",
            "https://artifacts.example/forwarder.wasm",
            "--hub",
            hub,
            "--ca",
        ])
        .arg(ca)
        .output()
        .unwrap()
}

#[test]
fn deploy_signs_into_the_desired_properties_and_refuses_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let setup = deploy_common::hub_with_device(dir.path(), "gw-01");
    let (keys, state, hub) = (&setup.keys, &setup.state, &setup.hub);
    let module = dir.path().join("forwarder.wasm");
    let bytes = b"\0asm\x01\0\0\0 module bytes".to_vec();
    std::fs::write(&module, &bytes).unwrap();
    let ca = &setup.ca;
    let trusted = [testudo_deployment::read_public_key(&keys.join("deploy.ed25519.pub")).unwrap()];

    // Two deployments: serials 1 and 2, each verifiable, saying what was deployed.
    for serial in [1u64, 2] {
        let printed = ok(deploy(keys, &module, ca, hub, "cloud-app"));
        assert!(
            printed.contains(&format!("into slot cloud-app of gw-01 as serial {serial}")),
            "{printed}"
        );
        let token = twin(state, "gw-01")["properties"]["desired"]["apps"]["cloud-app"]
            ["deployment"]
            .as_str()
            .unwrap()
            .to_owned();
        let verified = testudo_deployment::verify(&token, &trusted).unwrap();
        let deployment = verified.deployment();
        assert_eq!(deployment.slot, "cloud-app");
        assert_eq!(deployment.serial, serial);
        assert_eq!(deployment.compatible, "testudo-gateway-qemu-x86_64");
        let testudo_deployment::Action::Deploy(release) = &deployment.action else {
            panic!("a removal: {deployment:?}");
        };
        assert_eq!(release.app.name, "forwarder");
        assert_eq!(release.app.version, "1.2.0");
        release.app.check_module(&bytes).unwrap();
        assert!(release.uses.contains_key("upstream"), "{:?}", release.uses);
    }
    // Narrowed routes: only those named, each as the slot's maximum has it.
    let narrowed = ok(deploy_version(
        keys,
        &module,
        ca,
        hub,
        "cloud-app",
        "1.3.0",
        &["--uses", "upstream,log"],
    ));
    assert!(narrowed.contains("as serial 3"), "{narrowed}");
    let token = twin(state, "gw-01")["properties"]["desired"]["apps"]["cloud-app"]["deployment"]
        .as_str()
        .unwrap()
        .to_owned();
    let verified = testudo_deployment::verify(&token, &trusted).unwrap();
    let testudo_deployment::Action::Deploy(release) = &verified.deployment().action else {
        panic!("a removal");
    };
    assert_eq!(
        release.uses.keys().collect::<Vec<_>>(),
        ["log", "upstream"],
        "{:?}",
        release.uses
    );
    let wider = deploy_version(
        keys,
        &module,
        ca,
        hub,
        "cloud-app",
        "1.3.0",
        &["--uses", "upstream,net"],
    );
    assert!(!wider.status.success());
    let stderr = String::from_utf8_lossy(&wider.stderr);
    assert!(
        stderr.contains("--uses net: slot cloud-app has no route `net`"),
        "{stderr}"
    );

    let before = twin(state, "gw-01")["properties"]["desired"]["$version"].clone();

    // A slot the system does not have: refused, naming the slots it has; nothing set.
    let refused = deploy(keys, &module, ca, hub, "no-such-slot");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("no app slot \"no-such-slot\" (its slots: cloud-app)"),
        "{stderr}"
    );

    // A document devices would refuse (not a semantic version): refused before sending.
    let refused = deploy_version(keys, &module, ca, hub, "cloud-app", "1.0", &[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("a semantic version"), "{stderr}");

    // A hub whose certificate the given CA did not issue: refused before anything is sent.
    let wrong_ca = keys.join("ca.pem");
    let untrusted = deploy(keys, &module, &wrong_ca, hub, "cloud-app");
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("GET /twins/gw-01"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        twin(state, "gw-01")["properties"]["desired"]["$version"],
        before
    );

    // A removal is a signed document too, with the next serial.
    let printed = ok(testudo()
        .args([
            "deploy",
            "remove",
            "gw-01",
            "--slot",
            "cloud-app",
            "--config",
        ])
        .arg(repo().join("system-config/examples/gateway.ncl"))
        .arg("--keys")
        .arg(keys)
        .args(["--hub", hub, "--ca"])
        .arg(ca)
        .output()
        .unwrap());
    assert!(
        printed.contains("removing the app of slot cloud-app of gw-01 as serial 4"),
        "{printed}"
    );
    let token = twin(state, "gw-01")["properties"]["desired"]["apps"]["cloud-app"]["deployment"]
        .as_str()
        .unwrap()
        .to_owned();
    let removal = testudo_deployment::verify(&token, &trusted).unwrap();
    assert_eq!(removal.deployment().serial, 4);
    assert!(removal.deployment().is_removal());

    // Nothing reported yet: status says so.
    let status = ok(testudo()
        .args(["deploy", "status", "gw-01", "--hub", hub, "--ca"])
        .arg(ca)
        .output()
        .unwrap());
    assert_eq!(status, "gw-01 has reported no app slots yet\n");
}
