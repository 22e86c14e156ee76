//! Unit tests across the crate: the round trip, every refusal of `verify` (one step each),
//! the document's rules, the checks against the device and the module checks.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use testudo_plan::{AppSlot, Limits, RestartPolicy, Rights, Route, RouteBeyondSlot};

use crate::jws::compact;
use crate::*;

const COMPATIBLE: &str = "testudo-gateway-qemu-x86_64";
const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[2; 32])
}

fn trusted() -> Vec<VerifyingKey> {
    vec![key().verifying_key()]
}

fn route(component: &str, capability: &str, interface: &str, rights: Rights) -> Route {
    Route {
        component: component.into(),
        capability: capability.into(),
        interface: interface.into(),
        rights,
        allow: Vec::new(),
    }
}

/// The gateway example's slot.
fn slot() -> AppSlot {
    AppSlot {
        max_uses: BTreeMap::from([
            (
                "sensor".into(),
                route("sensor", "sensor", "sensor", Rights::Read),
            ),
            (
                "identity".into(),
                route("agent", "identity", "identity", Rights::Read),
            ),
            (
                "upstream".into(),
                route("agent", "telemetry", "telemetry", Rights::Write),
            ),
            ("log".into(), route("log", "log", "log", Rights::Write)),
        ]),
        limits: Limits {
            memory_bytes: 64 << 20,
            cpu_percent: 20,
            restart: RestartPolicy::Always,
            max_tasks: 1,
            cpu_time_ms: 100,
        },
        after: vec!["agent".into()],
        initial: None,
    }
}

fn deployment() -> Deployment {
    Deployment {
        slot: "cloud-app".into(),
        compatible: COMPATIBLE.into(),
        serial: 7,
        action: Action::Deploy(AppRelease {
            app: App {
                name: "forwarder".into(),
                version: "1.2.0".into(),
                sha256: hex::encode(Sha256::digest(MODULE)),
                size: MODULE.len() as u64,
            },
            uses: BTreeMap::from([
                (
                    "sensor".into(),
                    route("sensor", "sensor", "sensor", Rights::Read),
                ),
                ("log".into(), route("log", "log", "log", Rights::Write)),
            ]),
            url: Some("https://apps.example/forwarder-1.2.0.wasm".into()),
        }),
    }
}

fn removal() -> Deployment {
    Deployment {
        serial: 8,
        action: Action::Remove,
        ..deployment()
    }
}

fn release_mut(deployment: &mut Deployment) -> &mut AppRelease {
    match &mut deployment.action {
        Action::Deploy(release) => release,
        Action::Remove => panic!("not a deployment"),
    }
}

/// The header `sign` writes for `key`.
fn header(key: &SigningKey) -> String {
    format!(
        r#"{{"alg":"EdDSA","kid":"{}","typ":"testudo-deployment+jws"}}"#,
        key_id(&key.verifying_key())
    )
}

/// A token of `header` and `payload` (JSON texts), signed with `key`.
fn token(header: &str, payload: &str, key: &SigningKey) -> String {
    compact(header.as_bytes(), payload.as_bytes(), key)
}

/// A token of two segments as given (any text), signed with `key`.
fn token_of_segments(header_b64: &str, payload_b64: &str, key: &SigningKey) -> String {
    let input = format!("{header_b64}.{payload_b64}");
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// `payload` (a document's JSON) signed correctly: what `verify` says about the document.
fn verify_payload(payload: &str) -> Result<VerifiedDeployment, DeploymentError> {
    verify(&token(&header(&key()), payload, &key()), &trusted())
}

fn payload_json(deployment: &Deployment) -> serde_json::Value {
    serde_json::to_value(deployment).unwrap()
}

fn verified(deployment: &Deployment) -> VerifiedDeployment {
    verify(&sign(deployment, &key()).unwrap(), &trusted()).unwrap()
}

// --- Round trip and form ---------------------------------------------------------------

#[test]
fn a_signed_deployment_verifies_to_the_same_document() {
    let token = sign(&deployment(), &key()).unwrap();
    let verified = verify(&token, &trusted()).unwrap();
    assert_eq!(verified.deployment(), &deployment());
    assert_eq!(verified.kid(), key_id(&key().verifying_key()));
    // Ed25519 is deterministic: the same document and key give the same token.
    assert_eq!(sign(&deployment(), &key()).unwrap(), token);
    // Among several trusted keys, the one the header names is used.
    let both = [other_key().verifying_key(), key().verifying_key()];
    assert_eq!(
        verify(&token, &both).unwrap().into_deployment(),
        deployment()
    );
}

#[test]
fn a_signed_removal_verifies_to_the_same_document() {
    let verified = verified(&removal());
    assert!(verified.deployment().is_removal());
    assert_eq!(verified.deployment().release(), None);
    assert_eq!(verified.into_deployment(), removal());
}

#[test]
fn the_token_has_the_documented_header_and_payload() {
    let token = sign(&deployment(), &key()).unwrap();
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(segments[0]).unwrap(),
        header(&key()).as_bytes()
    );
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(segments[1]).unwrap()).unwrap();
    assert_eq!(
        payload,
        format!(
            concat!(
                r#"{{"action":"deploy","format":1,"slot":"cloud-app","#,
                r#""compatible":"testudo-gateway-qemu-x86_64","serial":7,"#,
                r#""app":{{"name":"forwarder","version":"1.2.0","sha256":"{}","size":{}}},"#,
                r#""uses":{{"log":{{"component":"log","capability":"log","interface":"log","rights":"write","allow":[]}},"#,
                r#""sensor":{{"component":"sensor","capability":"sensor","interface":"sensor","rights":"read","allow":[]}}}},"#,
                r#""url":"https://apps.example/forwarder-1.2.0.wasm"}}"#
            ),
            hex::encode(Sha256::digest(MODULE)),
            MODULE.len()
        )
    );
    let removal = sign(&removal(), &key()).unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(removal.split('.').nth(1).unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(payload).unwrap(),
        r#"{"action":"remove","format":1,"slot":"cloud-app","compatible":"testudo-gateway-qemu-x86_64","serial":8}"#
    );
}

#[test]
fn the_url_is_optional_and_fields_may_come_in_any_order() {
    let mut without_url = deployment();
    release_mut(&mut without_url).url = None;
    assert_eq!(verified(&without_url).into_deployment(), without_url);
    let mut value = payload_json(&without_url);
    let object = value.as_object_mut().unwrap();
    let reordered: serde_json::Map<String, serde_json::Value> = object
        .iter()
        .rev()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    *object = reordered;
    assert_eq!(
        verify_payload(&value.to_string())
            .unwrap()
            .into_deployment(),
        without_url
    );
}

// --- The token: one refusal per step ----------------------------------------------------

#[test]
fn an_oversized_token_is_refused_before_it_is_read() {
    let token = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert!(matches!(
        verify(&token, &trusted()),
        Err(DeploymentError::TokenSize { found, max }) if found == MAX_TOKEN_BYTES + 1 && max == MAX_TOKEN_BYTES
    ));
}

#[test]
fn a_token_of_other_than_three_segments_is_refused() {
    let token = sign(&deployment(), &key()).unwrap();
    let (two, _) = token.rsplit_once('.').unwrap();
    for (text, found) in [
        ("", 1),
        ("abc", 1),
        (two, 2),
        (&format!("{token}."), 4),
        (&format!("{token}.x"), 4),
    ] {
        match verify(text, &trusted()) {
            Err(DeploymentError::Segments { found: n }) => assert_eq!(n, found, "{text}"),
            other => panic!("{text}: unexpected {other:?}"),
        }
    }
}

#[test]
fn segments_that_are_not_unpadded_base64url_are_refused() {
    let token = sign(&deployment(), &key()).unwrap();
    let [h, p, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
    let padded_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"} "#) + "=";
    let cases = [
        (format!("{padded_header}.{p}.{s}"), Segment::Header),
        (format!("{h} .{p}.{s}"), Segment::Header),
        (format!("{h}.{p}./{}", &s[1..]), Segment::Signature),
        (format!("{h}.{p}.+{}", &s[1..]), Segment::Signature),
        (format!("{h}.{p}.{s}\n"), Segment::Signature),
    ];
    for (text, segment) in cases {
        match verify(&text, &trusted()) {
            Err(DeploymentError::Base64 { segment: found, .. }) => {
                assert_eq!(found, segment, "{text}")
            }
            other => panic!("{text}: unexpected {other:?}"),
        }
    }
    // The last character of `AQ` has no stray bits; `AR` has: not the one encoding of 0x01.
    let strict = token_of_segments(&URL_SAFE_NO_PAD.encode(header(&key())), "AR", &key());
    assert!(matches!(
        verify(&strict, &trusted()),
        Err(DeploymentError::Base64 {
            segment: Segment::Payload,
            ..
        })
    ));
    // A payload segment that is not base64url at all, signed: refused after the signature.
    let signed = token_of_segments(&URL_SAFE_NO_PAD.encode(header(&key())), "e30=", &key());
    assert!(matches!(
        verify(&signed, &trusted()),
        Err(DeploymentError::Base64 {
            segment: Segment::Payload,
            ..
        })
    ));
}

#[test]
fn headers_this_format_does_not_allow_are_refused() {
    let payload = payload_json(&deployment()).to_string();
    let kid = key_id(&key().verifying_key());
    for header in [
        "not json".to_owned(),
        "[]".to_owned(),
        r#"{"kid":"x","typ":"testudo-deployment+jws"}"#.to_owned(),
        format!(
            r#"{{"alg":"EdDSA","kid":"{kid}","typ":"testudo-deployment+jws","jku":"https://x"}}"#
        ),
        format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"testudo-deployment+jws","b64":false}}"#),
        format!(r#"{{"alg":"EdDSA","alg":"EdDSA","kid":"{kid}","typ":"testudo-deployment+jws"}}"#),
        format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"testudo-deployment+jws"}} trailing"#),
    ] {
        assert!(
            matches!(
                verify(&token(&header, &payload, &key()), &trusted()),
                Err(DeploymentError::Header { .. })
            ),
            "{header}"
        );
    }
    let deep = format!(
        r#"{{"alg":"EdDSA","kid":"{kid}","typ":"testudo-deployment+jws","crit":[[[[["x"]]]]]}}"#
    );
    assert!(matches!(
        verify(&token(&deep, &payload, &key()), &trusted()),
        Err(DeploymentError::Nesting {
            segment: Segment::Header,
            max: MAX_NESTING
        })
    ));
}

#[test]
fn every_algorithm_but_eddsa_is_refused_none_included() {
    let payload = URL_SAFE_NO_PAD.encode(payload_json(&deployment()).to_string());
    let kid = key_id(&key().verifying_key());
    for alg in ["none", "HS256", "ES256", "RS256", "Ed25519", "eddsa", ""] {
        let header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"{alg}","kid":"{kid}","typ":"testudo-deployment+jws"}}"#
        ));
        // An unsecured JWS (`none`) has an empty signature; the others a real one.
        for token in [
            format!("{header}.{payload}."),
            token_of_segments(&header, &payload, &key()),
        ] {
            match verify(&token, &trusted()) {
                Err(DeploymentError::Algorithm { found }) => assert_eq!(found, alg),
                other => panic!("{alg}: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn a_critical_header_is_refused_whatever_it_lists() {
    let payload = payload_json(&deployment()).to_string();
    let kid = key_id(&key().verifying_key());
    for crit in [r#"["exp"]"#, "[]", "null"] {
        let header = format!(
            r#"{{"alg":"EdDSA","crit":{crit},"kid":"{kid}","typ":"testudo-deployment+jws"}}"#
        );
        assert!(
            matches!(
                verify(&token(&header, &payload, &key()), &trusted()),
                Err(DeploymentError::CriticalHeader)
            ),
            "{crit}"
        );
    }
}

#[test]
fn a_token_of_another_type_is_refused() {
    let payload = payload_json(&deployment()).to_string();
    let kid = key_id(&key().verifying_key());
    for (typ, found) in [
        ("", None),
        (r#","typ":"JWT""#, Some("JWT")),
        (
            r#","typ":"Testudo-Deployment+JWS""#,
            Some("Testudo-Deployment+JWS"),
        ),
        (r#","typ":null"#, None),
    ] {
        let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}"{typ}}}"#);
        match verify(&token(&header, &payload, &key()), &trusted()) {
            Err(DeploymentError::Type { found: f }) => assert_eq!(f.as_deref(), found),
            other => panic!("{typ}: unexpected {other:?}"),
        }
    }
}

#[test]
fn a_token_without_a_key_id_is_refused() {
    let payload = payload_json(&deployment()).to_string();
    let header = r#"{"alg":"EdDSA","typ":"testudo-deployment+jws"}"#;
    assert!(matches!(
        verify(&token(header, &payload, &key()), &trusted()),
        Err(DeploymentError::MissingKeyId)
    ));
}

#[test]
fn a_token_signed_by_an_untrusted_key_is_refused_naming_both_keys() {
    let token = sign(&deployment(), &other_key()).unwrap();
    match verify(&token, &trusted()) {
        Err(DeploymentError::UnknownKey { kid, trusted }) => {
            assert_eq!(kid, key_id(&other_key().verifying_key()));
            assert_eq!(trusted, vec![key_id(&key().verifying_key())]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let error = verify(&token, &[]).unwrap_err();
    assert!(error.to_string().contains("(trusted: none)"), "{error}");
}

#[test]
fn a_signature_of_the_wrong_length_is_refused() {
    let token = sign(&deployment(), &key()).unwrap();
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes.pop();
    let short = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&bytes));
    assert!(matches!(
        verify(&short, &trusted()),
        Err(DeploymentError::SignatureLength { found: 63 })
    ));
    assert!(matches!(
        verify(&format!("{signed}."), &trusted()),
        Err(DeploymentError::SignatureLength { found: 0 })
    ));
}

#[test]
fn a_signature_that_does_not_verify_is_refused() {
    let signed = sign(&deployment(), &key()).unwrap();
    let [h, _, s]: [&str; 3] = signed.split('.').collect::<Vec<_>>().try_into().unwrap();
    let kid = key_id(&key().verifying_key());
    // Another payload under the original signature.
    let mut changed = deployment();
    changed.serial = 70;
    let swapped = format!(
        "{h}.{}.{s}",
        URL_SAFE_NO_PAD.encode(payload_json(&changed).to_string())
    );
    // Signed by another key that claims the trusted key's id.
    let impostor = token(
        &header(&key()),
        &payload_json(&deployment()).to_string(),
        &other_key(),
    );
    // One bit of the signature flipped.
    let mut bytes = URL_SAFE_NO_PAD.decode(s).unwrap();
    bytes[10] ^= 1;
    let flipped = format!(
        "{}.{}",
        signed.rsplit_once('.').unwrap().0,
        URL_SAFE_NO_PAD.encode(&bytes)
    );
    for bad in [swapped, impostor, flipped] {
        match verify(&bad, &trusted()) {
            Err(DeploymentError::Signature { kid: k, .. }) => assert_eq!(k, kid),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_malleated_signature_is_refused() {
    // S + L (L the group order) is the same signature to a verifier that does not require
    // S < L (RFC 8032 does): a second token for the same document. Refused.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let token = sign(&deployment(), &key()).unwrap();
    let mut bytes = URL_SAFE_NO_PAD
        .decode(token.rsplit_once('.').unwrap().1)
        .unwrap();
    // S < L < 2^253, so S + L < 2^254: no carry out of the 32 bytes.
    let mut carry = 0u16;
    for (i, l) in L.iter().enumerate() {
        let sum = u16::from(bytes[32 + i]) + u16::from(*l) + carry;
        bytes[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let malleated = format!(
        "{}.{}",
        token.rsplit_once('.').unwrap().0,
        URL_SAFE_NO_PAD.encode(&bytes)
    );
    assert!(matches!(
        verify(&malleated, &trusted()),
        Err(DeploymentError::Signature { .. })
    ));
}

// --- The document ----------------------------------------------------------------------

#[test]
fn a_document_of_another_format_is_refused_as_such() {
    for (format, found) in [("2", Some(2)), ("0", Some(0)), (r#""1""#, None)] {
        let mut value = payload_json(&deployment());
        value["format"] = serde_json::from_str(format).unwrap();
        // Another format may have other fields: the format is what is reported.
        value["new_field"] = serde_json::json!(true);
        match verify_payload(&value.to_string()) {
            Err(DeploymentError::Format { found: f, expected }) => {
                assert_eq!((f, expected), (found, FORMAT), "{format}")
            }
            other => panic!("{format}: unexpected {other:?}"),
        }
    }
    let mut value = payload_json(&deployment());
    value.as_object_mut().unwrap().remove("format");
    assert!(matches!(
        verify_payload(&value.to_string()),
        Err(DeploymentError::Format { found: None, .. })
    ));
}

#[test]
fn documents_not_shaped_like_a_deployment_are_refused() {
    let good = payload_json(&deployment()).to_string();
    let mut cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not json"),
        ("[]".into(), "an array"),
        (good.replacen(r#""action":"deploy""#, r#""action":"install""#, 1), "unknown action"),
        (good.replacen(r#""action":"deploy","#, "", 1), "no action"),
        (good.replacen(r#""serial":7"#, r#""serial":-1"#, 1), "negative serial"),
        (good.replacen(r#""serial":7"#, r#""serial":18446744073709551616"#, 1), "serial beyond u64"),
        (good.replacen(r#""serial":7"#, r#""serial":7.0"#, 1), "float serial"),
        (good.replacen(r#""serial":7"#, r#""serial":"7""#, 1), "string serial"),
        (good.replacen(r#""slot":"cloud-app","#, "", 1), "missing slot"),
        (good.replacen(r#""slot":"#, r#""slot":"x","slot":"#, 1), "repeated slot"),
        (good.replacen(r#""action":"deploy""#, r#""action":"deploy","action":"deploy""#, 1), "repeated action"),
        (good.replacen(r#""format":1"#, r#""format":1,"extra":0"#, 1), "unknown field"),
        (good.replacen(r#""size":"#, r#""extra":0,"size":"#, 1), "unknown app field"),
        (good.replacen(r#""allow":[]"#, r#""allow":[],"extra":0"#, 1), "unknown route field"),
        (good.replacen(r#""rights":"read""#, r#""rights":"admin""#, 1), "unknown rights"),
        (good.replacen(r#""uses":{"#, r#""uses":{"log":{"component":"log","capability":"log","interface":"log","rights":"write","allow":[]},"#, 1), "repeated local name"),
        (format!("{good} trailing"), "trailing text"),
    ];
    // A removal names no app: its deployment fields are unknown fields there.
    let mut removal_with_app = payload_json(&deployment());
    removal_with_app["action"] = "remove".into();
    cases.push((removal_with_app.to_string(), "removal with an app"));
    let mut deploy_without_app = payload_json(&removal());
    deploy_without_app["action"] = "deploy".into();
    cases.push((deploy_without_app.to_string(), "deployment without an app"));
    for (payload, what) in cases {
        match verify_payload(&payload) {
            Err(DeploymentError::Document { .. }) => {}
            other => panic!("{what}: unexpected {other:?}"),
        }
    }
}

#[test]
fn a_document_nesting_too_deep_is_refused_before_it_is_parsed() {
    let good = payload_json(&deployment()).to_string();
    let deep = good.replacen(r#""allow":[]"#, r#""allow":[[]]"#, 1);
    assert!(matches!(
        verify_payload(&deep),
        Err(DeploymentError::Nesting {
            segment: Segment::Payload,
            ..
        })
    ));
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let token = token(&header(&key()), &bomb, &key());
    assert!(matches!(
        verify(&token, &trusted()),
        Err(DeploymentError::TokenSize { .. })
    ));
    // Brackets inside strings do not count.
    let mut value = payload_json(&deployment());
    value["uses"]["sensor"]["allow"] = serde_json::json!(["[[[[[[[[\"{{{{{"]);
    verify_payload(&value.to_string()).unwrap();
}

#[test]
fn field_values_the_format_does_not_allow_are_refused_by_verify_and_sign() {
    type Edit = fn(&mut Deployment);
    let cases: [(&str, Edit); 14] = [
        ("slot", |d| d.slot = "Cloud-App".into()),
        ("slot", |d| d.slot = String::new()),
        ("slot", |d| d.slot = "a".repeat(64)),
        ("slot", |d| d.slot = "../etc".into()),
        ("compatible", |d| d.compatible = String::new()),
        ("app.name", |d| release_mut(d).app.name = "9lives".into()),
        ("app.version", |d| release_mut(d).app.version = "1.2".into()),
        ("app.version", |d| {
            release_mut(d).app.version = "01.2.3".into()
        }),
        ("app.sha256", |d| {
            release_mut(d).app.sha256 = "AB".repeat(32)
        }),
        ("app.sha256", |d| {
            release_mut(d).app.sha256 = "ab".repeat(31)
        }),
        ("app.size", |d| release_mut(d).app.size = 7),
        ("uses", |d| {
            let log = route("log", "log", "log", Rights::Write);
            release_mut(d).uses.insert(String::new(), log);
        }),
        ("url", |d| release_mut(d).url = Some("https://x/a b".into())),
        ("url", |d| release_mut(d).url = Some(String::new())),
    ];
    for (field, edit) in cases {
        let mut document = deployment();
        edit(&mut document);
        match sign(&document, &key()) {
            Err(DeploymentError::Field { field: f, .. }) => assert_eq!(f, field),
            other => panic!("sign {field}: unexpected {other:?}"),
        }
        match verify_payload(&payload_json(&document).to_string()) {
            Err(DeploymentError::Field { field: f, .. }) => assert_eq!(f, field),
            other => panic!("verify {field}: unexpected {other:?}"),
        }
    }
    let mut removal = removal();
    removal.slot = "UPPER".into();
    assert!(matches!(
        sign(&removal, &key()),
        Err(DeploymentError::Field { .. })
    ));
}

#[test]
fn semantic_versions_follow_the_config_schema() {
    for good in [
        "0.0.0",
        "1.2.3",
        "10.20.30",
        "1.0.0-rc.1",
        "1.0.0+build.5",
        "1.0.0-a-b+c-d",
    ] {
        assert!(document::is_semver(good), "{good}");
    }
    for bad in [
        "",
        "1",
        "1.2",
        "1.2.3.4",
        "01.2.3",
        "1.2.3-",
        "1.2.3+",
        "1.2.3-a_b",
        "v1.2.3",
    ] {
        assert!(!document::is_semver(bad), "{bad}");
    }
}

#[test]
fn sign_refuses_a_document_too_large_for_a_token() {
    let mut document = deployment();
    release_mut(&mut document)
        .uses
        .get_mut("sensor")
        .unwrap()
        .allow = (0..400).map(|i| format!("host-{i}.example:443")).collect();
    assert!(matches!(
        sign(&document, &key()),
        Err(DeploymentError::TokenSize { .. })
    ));
}

#[test]
fn errors_do_not_repeat_their_source() {
    let error = verify_payload("not json").unwrap_err();
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(!error.to_string().contains(&source), "{error}");
}

// --- Against the device ----------------------------------------------------------------

#[test]
fn a_deployment_that_fits_the_device_is_admitted() {
    let deploy = verified(&deployment());
    check_against_device(&deploy, Some(&slot()), COMPATIBLE, None).unwrap();
    check_against_device(&deploy, Some(&slot()), COMPATIBLE, Some(6)).unwrap();
    check_against_device(&verified(&removal()), Some(&slot()), COMPATIBLE, Some(7)).unwrap();
}

#[test]
fn every_reason_a_deployment_does_not_fit_is_reported() {
    let mut document = deployment();
    let uses = &mut release_mut(&mut document).uses;
    uses.insert(
        "sensor".into(),
        route("sensor", "sensor", "sensor", Rights::ReadWrite),
    );
    uses.insert(
        "shell".into(),
        route("shell", "exec", "exec", Rights::ReadWrite),
    );
    let mut log = route("log", "log", "log", Rights::Write);
    log.allow = vec!["everything".into()];
    uses.insert("log".into(), log);
    let error = check_against_device(
        &verified(&document),
        Some(&slot()),
        "another-system",
        Some(7),
    )
    .unwrap_err();
    let DeploymentError::Refused {
        slot: name,
        serial,
        remove,
        reasons,
    } = &error
    else {
        panic!("unexpected {error:?}");
    };
    assert_eq!((name.as_str(), *serial, *remove), ("cloud-app", 7, false));
    assert_eq!(
        reasons,
        &vec![
            Refusal::OtherSystem {
                document: COMPATIBLE.into(),
                device: "another-system".into()
            },
            Refusal::Replay {
                serial: 7,
                installed: 7
            },
            Refusal::Route {
                local: "log".into(),
                reason: RouteBeyondSlot::Allow {
                    entry: "everything".into()
                }
            },
            Refusal::Route {
                local: "sensor".into(),
                reason: RouteBeyondSlot::Rights {
                    found: Rights::ReadWrite,
                    max: Rights::Read
                }
            },
            Refusal::Route {
                local: "shell".into(),
                reason: RouteBeyondSlot::UnknownName {
                    local: "shell".into(),
                    allowed: vec![
                        "identity".into(),
                        "log".into(),
                        "sensor".into(),
                        "upstream".into()
                    ]
                }
            },
        ]
    );
    let message = error.to_string();
    assert!(
        message.starts_with("deployment 7 for slot `cloud-app` refused: it is for system"),
        "{message}"
    );
    assert!(
        message.contains("; serial 7 is not greater than the slot's installed serial 7;"),
        "{message}"
    );
    assert!(
        message.contains("route `shell`: `shell` is not among"),
        "{message}"
    );
}

#[test]
fn a_deployment_for_a_slot_the_plan_lacks_is_refused() {
    let error = check_against_device(&verified(&deployment()), None, COMPATIBLE, None).unwrap_err();
    assert!(matches!(
        &error,
        DeploymentError::Refused { reasons, .. }
            if reasons == &[Refusal::NoSuchSlot { slot: "cloud-app".into() }]
    ));
}

#[test]
fn a_replayed_removal_is_refused_and_its_routes_are_not_asked_about() {
    let error = check_against_device(&verified(&removal()), Some(&slot()), COMPATIBLE, Some(9))
        .unwrap_err();
    assert!(matches!(
        &error,
        DeploymentError::Refused { remove: true, reasons, .. }
            if reasons == &[Refusal::Replay { serial: 8, installed: 9 }]
    ));
    assert!(
        error.to_string().starts_with("removal 8 for slot"),
        "{error}"
    );
}

// --- The module ------------------------------------------------------------------------

#[test]
fn the_module_must_have_the_deployed_size_and_hash() {
    let document = deployment();
    let app = &document.release().unwrap().app;
    app.check_module(MODULE).unwrap();
    let mut hasher = ModuleHasher::new();
    std::io::copy(&mut &MODULE[..], &mut hasher).unwrap();
    assert_eq!(hasher.size(), MODULE.len() as u64);
    app.check_digest(&hasher.finish()).unwrap();

    assert!(matches!(
        app.check_module(&MODULE[1..]),
        Err(DeploymentError::ModuleSize { expected, found, .. })
            if expected == MODULE.len() as u64 && found == MODULE.len() as u64 - 1
    ));
    let mut other = MODULE.to_vec();
    other[0] ^= 1;
    match app.check_module(&other) {
        Err(DeploymentError::ModuleHash {
            app: name,
            expected,
            found,
        }) => {
            assert_eq!(name, "forwarder");
            assert_eq!(expected, app.sha256);
            assert_eq!(found, hex::encode(Sha256::digest(&other)));
        }
        other => panic!("unexpected {other:?}"),
    }
}
