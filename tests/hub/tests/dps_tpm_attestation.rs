//! Promise: DPS TPM attestation over HTTPS challenges only the enrolled EK, answering with an
//! `authenticationKey` laid out as Azure's device clients unmarshal it; everything else
//! (unknown enrollment, other EK, malformed keys or bodies, unsigned or forged follow-ups) is
//! refused with DPS's error codes and creates no device. (The full flow against a real TPM,
//! swtpm, is `os/agent/tests/dps_tpm.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use serde_json::{json, Value};
use testudo_hub::RunningHub;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An RSA 2048 restricted decryption key's `TPM2B_PUBLIC` with the given modulus filler
/// (EK/SRK template layout; any odd modulus of full size encrypts).
fn rsa_public(fill: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&1u16.to_be_bytes()); // TPM_ALG_RSA
    t.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256
    t.extend_from_slice(&0x0003_00B2u32.to_be_bytes()); // EK attributes (restricted|decrypt|...)
    t.extend_from_slice(&[0, 0]); // empty policy
    t.extend_from_slice(&[0x00, 0x06, 0x00, 0x80, 0x00, 0x43]); // AES-128-CFB
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // NULL scheme
    t.extend_from_slice(&2048u16.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    let mut modulus = vec![fill; 256];
    modulus[0] |= 0x80;
    modulus[255] |= 0x01;
    t.extend_from_slice(&256u16.to_be_bytes());
    t.extend_from_slice(&modulus);
    let mut out = u16::try_from(t.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(&t);
    out
}

/// One HTTPS request to the emulator's DPS endpoint; returns status and JSON body.
fn request(
    hub: &RunningHub,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let tls = testudo_hub::tls::client_config(&hub.ca_pem).unwrap();
    let name = rustls::pki_types::ServerName::try_from(hub.host.clone()).unwrap();
    let connection = rustls::ClientConnection::new(tls, name).unwrap();
    let tcp = TcpStream::connect(hub.https_addr).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let body = body.unwrap_or_default();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        hub.host,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    (status, json)
}

fn register_body(id: &str, ek: &[u8], srk: &[u8]) -> String {
    json!({"registrationId": id, "tpm": {"endorsementKey": B64.encode(ek), "storageRootKey": B64.encode(srk)}})
        .to_string()
}

/// Splits the blob into its five `TPM2B`s, checking nothing is left over.
fn tpm2b_parts(mut blob: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    while !blob.is_empty() {
        let size = usize::from(u16::from_be_bytes([blob[0], blob[1]]));
        parts.push(blob[2..2 + size].to_vec());
        blob = &blob[2 + size..];
    }
    parts
}

#[test]
fn only_the_enrolled_ek_gets_a_well_formed_challenge() {
    let (dir, hub) = common::start();
    let scope = hub.id_scope();
    let (ek, srk) = (rsa_public(0xC5), rsa_public(0x9A));
    hub.add_tpm_enrollment("tpm-1", &ek).unwrap();
    let path = |id: &str| format!("/{scope}/registrations/{id}/register?api-version=2021-06-01");

    // The enrolled EK: 401 with the authentication key.
    let (status, answer) = request(
        &hub,
        "PUT",
        &path("tpm-1"),
        None,
        Some(&register_body("tpm-1", &ek, &srk)),
    );
    assert_eq!(status, 401, "{answer}");
    let blob = B64
        .decode(
            answer["authenticationKey"]
                .as_str()
                .expect("authenticationKey"),
        )
        .unwrap();
    let parts = tpm2b_parts(&blob);
    assert_eq!(parts.len(), 5, "ID_OBJECT, SECRET, PRIVATE, SECRET, PUBLIC");
    // ID object: TPM2B_DIGEST(HMAC-SHA256) + encrypted TPM2B(16-byte inner key).
    assert_eq!(parts[0].len(), 2 + 32 + 2 + 16);
    assert_eq!(parts[1].len(), 256, "seed encrypted to the RSA 2048 EK");
    assert_eq!(parts[3].len(), 256, "seed encrypted to the RSA 2048 SRK");
    // The key's public area: keyed hash, SHA-256, sign|userWithAuth|noDA, no policy, HMAC.
    assert_eq!(&parts[4][..8], &[0, 8, 0, 0x0B, 0, 0x04, 0x04, 0x40]);
    assert_eq!(&parts[4][8..14], &[0, 0, 0, 5, 0, 0x0B]);
    // Each challenge is fresh.
    let (_, again) = request(
        &hub,
        "PUT",
        &path("tpm-1"),
        None,
        Some(&register_body("tpm-1", &ek, &srk)),
    );
    assert_ne!(again["authenticationKey"], answer["authenticationKey"]);

    // Another TPM claiming the enrollment, an unknown enrollment, a wrong scope: refused alike.
    let other = rsa_public(0x11);
    for (id, url, key) in [
        ("tpm-1", path("tpm-1"), &other),
        ("tpm-2", path("tpm-2"), &ek),
        (
            "tpm-1",
            "/0neWRONG/registrations/tpm-1/register".to_owned(),
            &ek,
        ),
    ] {
        let (status, answer) =
            request(&hub, "PUT", &url, None, Some(&register_body(id, key, &srk)));
        assert_eq!(
            (status, answer["errorCode"].as_u64()),
            (401, Some(401_002)),
            "{url}: {answer}"
        );
        assert!(answer.get("authenticationKey").is_none());
    }

    // Malformed input: 400 with a reason, never a challenge.
    let mut truncated = srk.clone();
    truncated.truncate(100);
    let mut ecc = srk.clone();
    ecc[3] = 0x23; // TPM_ALG_ECC
    for body in [
        register_body("tpm-1", &ek, &truncated),
        register_body("tpm-1", &ek, &ecc),
        register_body("someone-else", &ek, &srk),
        json!({"registrationId": "tpm-1", "tpm": {"endorsementKey": "***", "storageRootKey": ""}})
            .to_string(),
        json!({"registrationId": "tpm-1"}).to_string(),
        "{not json".to_owned(),
    ] {
        let (status, answer) = request(&hub, "PUT", &path("tpm-1"), None, Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["message"].is_string());
    }

    // Follow-ups need a token signed with the issued key.
    let forged = testudo_hub::sas::generate(
        &format!("{scope}/registrations/tpm-1"),
        &testudo_hub::sas::random_key(),
        Some("registration"),
        testudo_hub::clock::unix_now() + 60,
    )
    .unwrap();
    let (status, _) = request(
        &hub,
        "PUT",
        &path("tpm-1"),
        Some(&forged),
        Some(&register_body("tpm-1", &ek, &srk)),
    );
    assert_eq!(status, 401);
    let status_path =
        format!("/{scope}/registrations/tpm-1/operations/4.0.1?api-version=2021-06-01");
    assert_eq!(request(&hub, "GET", &status_path, None, None).0, 401);
    assert_eq!(
        request(&hub, "GET", &status_path, Some(&forged), None).0,
        401
    );
    assert!(hub.twin("tpm-1").is_err(), "no device may exist yet");

    // Enrollments are validated and persisted.
    assert!(hub.add_tpm_enrollment("tpm-3", &truncated).is_err());
    hub.hub().flush();
    let stored = std::fs::read_to_string(dir.path().join("hub.json")).unwrap();
    assert!(stored.contains(&B64.encode(&ek)));
}
