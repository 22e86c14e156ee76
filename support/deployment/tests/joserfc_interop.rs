//! Promise: deployment tokens are standard JWS (RFC 7515, compact) with Ed25519 (RFC 8037)
//! and RFC 7638 key ids, checked against an independent JOSE implementation, PyPI `joserfc`
//! (`tests/joserfc_peer.py`, run by the project's Python interpreter, `TESTUDO_PYTHON`):
//! it verifies what `sign` produces with the public key as a JWK and computes the same key
//! id; `verify` accepts what it signs with the deploy key's PKCS#8 PEM; `verify` refuses what
//! it signs with any other key; keys it writes as SubjectPublicKeyInfo PEM load with the same
//! key id. Without the interpreter or `joserfc` the tests fail, naming what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
use ed25519_dalek::SigningKey;
use testudo_deployment::{
    key_id, public_jwk, public_key_from_pem, sign, verify, Action, App, AppRelease, Deployment,
    DeploymentError,
};
use testudo_plan::{Rights, Route};

fn require_joserfc() {
    if let Err(missing) = testudo_testkit::python::require_modules(
        &["joserfc"],
        "joserfc (an independent JOSE implementation, pinned in xtask/src/deps.rs)",
    ) {
        panic!("{missing}");
    }
}

/// Runs the peer with `args`; its JSON answer.
fn peer(args: &[&str]) -> serde_json::Value {
    require_joserfc();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/joserfc_peer.py");
    let output = testudo_testkit::python::command()
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "{} does not run: {error}",
                testudo_testkit::python::interpreter().to_string_lossy()
            )
        });
    assert!(
        output.status.success(),
        "joserfc peer {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "joserfc peer answered no JSON ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn deploy_key() -> SigningKey {
    SigningKey::from_bytes(&[0x11; 32])
}

fn deployment() -> Deployment {
    Deployment {
        slot: "cloud-app".into(),
        compatible: "testudo-gateway-qemu-x86_64".into(),
        serial: 12,
        action: Action::Deploy(AppRelease {
            app: App {
                name: "forwarder".into(),
                version: "1.2.0-rc.1+build.7".into(),
                sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                size: 53_412,
            },
            uses: BTreeMap::from([(
                "upstream".into(),
                Route {
                    component: "agent".into(),
                    capability: "telemetry".into(),
                    interface: "telemetry".into(),
                    rights: Rights::Write,
                    allow: Vec::new(),
                },
            )]),
            url: None,
        }),
    }
}

#[test]
fn joserfc_verifies_what_sign_produces_with_the_public_jwk() {
    let key = deploy_key();
    let token = sign(&deployment(), &key).unwrap();
    let jwk = public_jwk(&key.verifying_key()).to_string();
    let answer = peer(&["verify", &jwk, &token]);
    assert_eq!(answer["verified"], true, "{answer}");
    let kid = key_id(&key.verifying_key());
    assert_eq!(answer["thumbprint"], kid.as_str(), "RFC 7638 thumbprint");
    assert_eq!(
        answer["header"],
        serde_json::json!({"alg": "EdDSA", "kid": kid, "typ": "testudo-deployment+jws"})
    );
    assert_eq!(
        answer["payload"],
        serde_json::to_value(deployment()).unwrap()
    );

    // The peer really checks: under another key, the same token is refused.
    let other = public_jwk(&SigningKey::from_bytes(&[0x22; 32]).verifying_key()).to_string();
    let answer = peer(&["verify", &other, &token]);
    assert_eq!(answer["verified"], false, "{answer}");
}

#[test]
fn verify_accepts_what_joserfc_signs_with_the_deploy_key() {
    let key = deploy_key();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("deploy.ed25519");
    // PKCS#8 v1, the private key only: the form OpenSSL writes `deploy.ed25519` in.
    let pkcs8 = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    std::fs::write(&pem, pkcs8.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let kid = key_id(&key.verifying_key());
    // Written by hand as a signer outside this crate would, fields in another order.
    let deploy = r#"{"serial": 12, "slot": "cloud-app", "format": 1, "action": "deploy",
        "compatible": "testudo-gateway-qemu-x86_64",
        "uses": {"upstream": {"allow": [], "rights": "write", "interface": "telemetry",
                              "capability": "telemetry", "component": "agent"}},
        "app": {"size": 53412, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "version": "1.2.0-rc.1+build.7", "name": "forwarder"}}"#;
    let removal = r#"{"action":"remove","format":1,"slot":"cloud-app","compatible":"testudo-gateway-qemu-x86_64","serial":13}"#;
    let trusted = [key.verifying_key()];

    let answer = peer(&["sign", pem.to_str().unwrap(), deploy, &kid]);
    assert_eq!(answer["thumbprint"], kid.as_str());
    let verified = verify(answer["token"].as_str().unwrap(), &trusted).unwrap();
    assert_eq!(verified.kid(), kid);
    assert_eq!(verified.into_deployment(), deployment());

    let answer = peer(&["sign", pem.to_str().unwrap(), removal, &kid]);
    let verified = verify(answer["token"].as_str().unwrap(), &trusted).unwrap();
    assert_eq!(
        verified.into_deployment(),
        Deployment {
            serial: 13,
            action: Action::Remove,
            ..deployment()
        }
    );
}

#[test]
fn verify_refuses_what_joserfc_signs_with_another_key() {
    let key = deploy_key();
    let kid = key_id(&key.verifying_key());
    let trusted = [key.verifying_key()];
    let payload = serde_json::to_string(&deployment()).unwrap();

    // Another key claiming the deploy key's id: the signature does not verify.
    let answer = peer(&["sign", "generate", &payload, &kid]);
    match verify(answer["token"].as_str().unwrap(), &trusted) {
        Err(DeploymentError::Signature { kid: checked, .. }) => assert_eq!(checked, kid),
        other => panic!("unexpected {other:?}"),
    }

    // Another key under its own id: not a trusted key. Its SubjectPublicKeyInfo PEM (as
    // OpenSSL writes `deploy.ed25519.pub`) loads here with the key id joserfc computes.
    let answer = peer(&["sign", "generate", &payload, "own"]);
    let other = public_key_from_pem(answer["public_pem"].as_str().unwrap()).unwrap();
    assert_eq!(answer["thumbprint"], key_id(&other).as_str());
    match verify(answer["token"].as_str().unwrap(), &trusted) {
        Err(DeploymentError::UnknownKey { kid: named, .. }) => assert_eq!(named, key_id(&other)),
        other => panic!("unexpected {other:?}"),
    }
    // ...and with that key trusted, the same token verifies.
    assert_eq!(
        verify(answer["token"].as_str().unwrap(), &[other])
            .unwrap()
            .into_deployment(),
        deployment()
    );
}
