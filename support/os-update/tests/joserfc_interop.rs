//! Promise: OS update signatures are Azure Device Update's JWS chain in standard JOSE (RFC
//! 7515 compact, RS256 of RFC 7518, RFC 7638 key ids), checked against an independent JOSE
//! implementation, PyPI `joserfc` (`tests/joserfc_peer.py`, run by the project's Python
//! interpreter, `TESTUDO_PYTHON`): it verifies what `sign` produces with the root key's JWK
//! (the `sjwk` token) and then with the signing JWK found there (the signature), computing
//! the same key ids and manifest hash; `verify` accepts an ADU-shaped chain it makes with
//! its own keys, and refuses its variants: a changed manifest, a root it does not trust, an
//! `sjwk` signed by a key that is not the root, a signature by a key the root did not vouch
//! for, `alg` `none`, and HS256 keyed with a public key. Without the interpreter or
//! `joserfc` the tests fail, naming what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::path::Path;

use testudo_os_update::keys::{init_dev_update_keys, load_signing_chain, ROOT_JWKS};
use testudo_os_update::manifest::{for_bundle, UpdateId};
use testudo_os_update::signature::{sign, verify};
use testudo_os_update::{Jws, OsUpdateError, RootKeys};

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
        "joserfc peer {:?} failed:\n{}",
        args.first(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "joserfc peer answered no JSON ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn manifest() -> String {
    for_bundle(
        UpdateId {
            provider: "testudo".into(),
            name: "gateway".into(),
            version: "1.3.0".into(),
        },
        BTreeMap::from([
            ("manufacturer".to_owned(), "testudo".to_owned()),
            ("model".to_owned(), "testudo-gateway-qemu-x86_64".to_owned()),
        ]),
        "update.raucb",
        81_920,
        [0x5a; 32],
        "1.3.0",
        "2026-12-04T00:00:00Z",
    )
    .to_json()
}

/// The root key's JWK in a keys directory's root key set.
fn root_jwk(dir: &Path) -> String {
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(ROOT_JWKS)).unwrap()).unwrap();
    jwks["keys"][0].to_string()
}

#[test]
fn joserfc_verifies_the_chain_sign_produces() {
    let dir = tempfile::tempdir().unwrap();
    init_dev_update_keys(dir.path()).unwrap();
    let chain = load_signing_chain(dir.path()).unwrap();
    let manifest = manifest();
    let signature = sign(&manifest, &chain).unwrap();

    let answer = peer(&["verify", &root_jwk(dir.path()), &manifest, &signature]);
    assert_eq!(answer["verified"], true, "{answer}");
    assert_eq!(answer["hash_matches"], true, "{answer}");
    assert_eq!(
        answer["root_thumbprint"],
        chain.root_kid.as_str(),
        "RFC 7638"
    );
    assert_eq!(
        answer["signing_thumbprint"],
        chain.signing_kid.as_str(),
        "RFC 7638"
    );
    assert_eq!(
        answer["sjwk_header"],
        serde_json::json!({"alg": "RS256", "kid": chain.root_kid})
    );
    assert_eq!(answer["header"]["alg"], "RS256");
    assert_eq!(answer["signing_jwk"]["kty"], "RSA");
    assert_eq!(answer["signing_jwk"]["alg"], "RS256");
    assert_eq!(answer["signing_jwk"]["kid"], chain.signing_kid.as_str());

    // The peer really checks: under another root key, the same signature is refused at the
    // `sjwk` token.
    let other = tempfile::tempdir().unwrap();
    init_dev_update_keys(other.path()).unwrap();
    let answer = peer(&["verify", &root_jwk(other.path()), &manifest, &signature]);
    assert_eq!(answer["verified"], false, "{answer}");
    assert_eq!(answer["stage"], "sjwk", "{answer}");
    // ...and it sees a changed manifest in the hash.
    let answer = peer(&[
        "verify",
        &root_jwk(dir.path()),
        &manifest.replace("1.3.0", "1.3.1"),
        &signature,
    ]);
    assert_eq!(answer["verified"], true, "{answer}");
    assert_eq!(answer["hash_matches"], false, "{answer}");
}

/// A manifest as ADU's service would hand it over: its own field order and whitespace (the
/// exact bytes are hashed, so they are kept as they are).
const ADU_SHAPED: &str = r#"{
  "manifestVersion": "5",
  "updateId": {"provider": "testudo", "name": "gateway", "version": "1.3.0"},
  "compatibility": [{"manufacturer": "testudo", "model": "testudo-gateway-qemu-x86_64"}],
  "instructions": {"steps": [{"handler": "testudo/bundle:1", "files": ["f27a"],
    "handlerProperties": {"installedCriteria": "1.3.0"}}]},
  "files": {"f27a": {"fileName": "update.raucb", "sizeInBytes": 81920,
    "hashes": {"sha256": "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo="}}},
  "createdDateTime": "2026-12-04T00:00:00.0000000Z"
}"#;

#[test]
fn verify_accepts_an_adu_shaped_chain_joserfc_makes_and_refuses_its_variants() {
    let answer = peer(&["sign", ADU_SHAPED]);
    let roots = RootKeys::from_jwks(answer["roots"].to_string().as_bytes()).unwrap();
    let root_kid = answer["root_kid"].as_str().unwrap();
    assert_eq!(roots.kids(), vec![root_kid]);
    let token = |name: &str| answer[name].as_str().unwrap().to_owned();

    let verified = verify(ADU_SHAPED, &token("signature"), &roots).unwrap();
    assert_eq!(verified.root_kid, root_kid);
    assert_eq!(
        verified.signing_kid,
        answer["signing_kid"].as_str().unwrap()
    );
    let step = verified.manifest.bundle_step().unwrap();
    assert_eq!(step.file_id, "f27a");
    assert_eq!(step.file.sha256, [0x5a; 32]);
    assert_eq!(step.installed_criteria, "1.3.0");
    // The key id is the same whichever side computes it.
    let root_key = RootKeys::from_jwks(
        serde_json::json!({"keys": [{
            "kty": "RSA",
            "n": answer["roots"]["keys"][0]["n"],
            "e": answer["roots"]["keys"][0]["e"],
        }]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(root_key.kids(), vec![root_kid], "RFC 7638 thumbprint");

    // One byte of the manifest changed (whitespace included).
    assert!(matches!(
        verify(
            &ADU_SHAPED.replacen("  ", " ", 1),
            &token("signature"),
            &roots
        ),
        Err(OsUpdateError::ManifestHash { .. })
    ));
    match verify(ADU_SHAPED, &token("unknown_kid"), &roots) {
        Err(OsUpdateError::UnknownRootKey { kid, trusted }) => {
            assert_eq!(kid, "not-a-root");
            assert_eq!(trusted, vec![root_kid.to_owned()]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        verify(ADU_SHAPED, &token("impostor_root"), &roots),
        Err(OsUpdateError::Signature { jws: Jws::SigningKey, kid, .. }) if kid == root_kid
    ));
    assert!(matches!(
        verify(ADU_SHAPED, &token("impostor_signing"), &roots),
        Err(OsUpdateError::Signature {
            jws: Jws::ManifestSignature,
            ..
        })
    ));
    assert!(matches!(
        verify(ADU_SHAPED, &token("alg_none"), &roots),
        Err(OsUpdateError::Algorithm { jws: Jws::ManifestSignature, found }) if found == "none"
    ));
    assert!(matches!(
        verify(ADU_SHAPED, &token("hs256"), &roots),
        Err(OsUpdateError::Algorithm { jws: Jws::ManifestSignature, found }) if found == "HS256"
    ));
    assert!(matches!(
        verify(ADU_SHAPED, &token("sjwk_hs256"), &roots),
        Err(OsUpdateError::Algorithm { jws: Jws::SigningKey, found }) if found == "HS256"
    ));
}
