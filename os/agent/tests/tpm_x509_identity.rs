//! Promise: an X.509 device identity whose ECDSA key is created in and never leaves the TPM:
//! the self-signed certificate it signs verifies (checked with openssl), and the agent
//! authenticates to the hub with it over TLS (CertificateVerify signed by TPM2_Sign).

#[path = "common/hub.rs"]
mod hub;

use std::sync::Arc;
use testudo_testkit::swtpm;

use serde_json::json;
use sha2::{Digest, Sha256};
use testudo_agent::tls::ClientIdentity;
use testudo_agent::tpm_x509::{self, TpmEcdsaKey};
use testudo_agent::{AgentConfig, Authentication, TlsSettings};

const HANDLE: u32 = 0x8100_0101;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_held_certificate_key_authenticates_to_the_hub() {
    let swtpm = swtpm::start();
    let hub = hub::TestHub::start();
    tpm_x509::create_ecdsa_key(&swtpm.tcti, HANDLE).unwrap();
    let key = Arc::new(TpmEcdsaKey::open(&swtpm.tcti, HANDLE).unwrap());
    let cert_pem = key.self_signed_certificate("tpm-cert-01").unwrap();

    // An independent check of the TPM's signature: openssl verifies the self-signed certificate.
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("device.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&cert_path)
        .arg(&cert_path)
        .output()
        .expect("openssl is installed (Debian package `openssl`)");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    hub.hub()
        .add_x509_device("tpm-cert-01", &hex::encode(Sha256::digest(&der)))
        .unwrap();
    let tls = TlsSettings {
        ca_pem: hub.hub().ca_pem.clone().into_bytes(),
        client_identity: Some(ClientIdentity::Tpm {
            cert: cert_pem.into_bytes(),
            key,
        }),
    };
    let mut config = AgentConfig::new(&hub.hub().host, "tpm-cert-01", tls, Authentication::X509);
    hub.point_at_emulator(&mut config);
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_desired(&mut events).await;
    agent
        .report(&json!({"identity": "x509+tpm"}))
        .await
        .unwrap();
    assert_eq!(
        hub.hub().reported("tpm-cert-01").unwrap()["identity"],
        "x509+tpm"
    );
    agent.shutdown().await;
}
