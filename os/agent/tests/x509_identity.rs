//! Promise: a device registered by certificate thumbprint connects with its X.509 client
//! certificate (no SAS password) and syncs its twin; a certificate the hub does not know is
//! refused.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};
use testudo_agent::tls::ClientIdentity;
use testudo_agent::{AgentConfig, AgentEvent, Authentication, TlsSettings};

fn client_identity(device_id: &str) -> (String, String, String) {
    let key = KeyPair::generate().expect("key pair");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("certificate params");
    params
        .distinguished_name
        .push(DnType::CommonName, device_id);
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let thumbprint = hex::encode_upper(Sha256::digest(cert.der()));
    (cert.pem(), key.serialize_pem(), thumbprint)
}

fn x509_config(hub: &hub::TestHub, device_id: &str, cert: &str, key: &str) -> AgentConfig {
    let tls = TlsSettings {
        ca_pem: hub.hub().ca_pem.clone().into_bytes(),
        client_identity: Some(ClientIdentity::Pem {
            cert: cert.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
        }),
    };
    let mut config = AgentConfig::new(&hub.hub().host, device_id, tls, Authentication::X509);
    hub.point_at_emulator(&mut config);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_device_connects_and_reports() {
    let hub = hub::TestHub::start();
    let (cert, key, thumbprint) = client_identity("cert-01");
    hub.hub().add_x509_device("cert-01", &thumbprint).unwrap();
    let (agent, mut events) = testudo_agent::spawn(x509_config(&hub, "cert-01", &cert, &key));
    hub::next_desired(&mut events).await;
    agent.report(&json!({"auth": "x509"})).await.unwrap();
    assert_eq!(hub.hub().reported("cert-01").unwrap()["auth"], "x509");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_certificate_is_refused() {
    let hub = hub::TestHub::start();
    let (_, _, registered) = client_identity("cert-02");
    hub.hub().add_x509_device("cert-02", &registered).unwrap();
    let (cert, key, _) = client_identity("cert-02"); // a different key pair
    let (agent, mut events) = testudo_agent::spawn(x509_config(&hub, "cert-02", &cert, &key));
    let reason = hub::next_event(&mut events, Duration::from_secs(10), |e| match e {
        AgentEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(
        reason.contains("not authorized") || reason.contains("refused"),
        "{reason}"
    );
    assert!(!hub.hub().is_connected("cert-02"));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_device_provisions_through_dps_then_connects() {
    use testudo_agent::dps::{self, DpsConfig};
    let hub = hub::TestHub::start();
    let (cert, key, thumbprint) = client_identity("cert-03");
    hub.hub()
        .add_x509_enrollment("cert-03", &thumbprint)
        .unwrap();
    let tls = TlsSettings {
        ca_pem: hub.hub().ca_pem.clone().into_bytes(),
        client_identity: Some(ClientIdentity::Pem {
            cert: cert.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
        }),
    };
    let assignment = dps::register(&DpsConfig {
        host: hub.hub().host.clone(),
        port: hub.mqtt_port,
        id_scope: hub.hub().id_scope(),
        registration_id: "cert-03".into(),
        tls,
        signer: None,
        timeout: Duration::from_secs(30),
        dialer: None,
    })
    .await
    .unwrap();
    assert_eq!(assignment.device_id, "cert-03");
    let (agent, mut events) = testudo_agent::spawn(x509_config(&hub, "cert-03", &cert, &key));
    hub::next_desired(&mut events).await;
    agent
        .report(&json!({"provisioned": "dps+x509"}))
        .await
        .unwrap();
    assert_eq!(
        hub.hub().reported("cert-03").unwrap()["provisioned"],
        "dps+x509"
    );
    agent.shutdown().await;
}
