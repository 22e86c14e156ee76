//! Promise: an X.509 enrollment group (a CA the factory enrolls) lets every device whose
//! certificate that CA issued provision itself through DPS under its certificate's common name,
//! then connect to the assigned hub with the same certificate and sync its twin; a certificate
//! from another CA, or one whose common name is not the registration id, is refused and no
//! device is created.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::json;
use testudo_agent::dps::{self, DpsConfig};
use testudo_agent::tls::ClientIdentity;
use testudo_agent::{AgentConfig, Authentication, TlsSettings};

/// A CA: its certificate (PEM) and what signs with it.
fn factory_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A device certificate for `common_name` issued by `ca`, with its key.
fn device_tls(hub: &hub::TestHub, common_name: &str, ca: &Issuer<'_, KeyPair>) -> TlsSettings {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    TlsSettings {
        ca_pem: hub.hub().ca_pem.clone().into_bytes(),
        client_identity: Some(ClientIdentity::Pem {
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }),
    }
}

fn dps_config(hub: &hub::TestHub, registration_id: &str, tls: TlsSettings) -> DpsConfig {
    DpsConfig {
        host: hub.hub().host.clone(),
        port: hub.mqtt_port,
        id_scope: hub.hub().id_scope(),
        registration_id: registration_id.into(),
        tls,
        signer: None,
        timeout: Duration::from_secs(30),
        dialer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_enrolled_ca_issued_provisions_and_connects_with_its_certificate() {
    let hub = hub::TestHub::start();
    let (ca_pem, ca) = factory_ca("Line 7 device CA");
    hub.hub()
        .add_x509_enrollment_group("line-7", &ca_pem)
        .unwrap();
    let tls = device_tls(&hub, "gw-line7-001", &ca);

    let assignment = dps::register(&dps_config(&hub, "gw-line7-001", tls.clone()))
        .await
        .unwrap();
    assert_eq!(assignment.device_id, "gw-line7-001");

    let mut config = AgentConfig::new(
        &hub.hub().host,
        &assignment.device_id,
        tls,
        Authentication::X509,
    );
    hub.point_at_emulator(&mut config);
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_desired(&mut events).await;
    agent
        .report(&json!({"provisioned": "dps+x509-ca"}))
        .await
        .unwrap();
    assert_eq!(
        hub.hub().reported("gw-line7-001").unwrap()["provisioned"],
        "dps+x509-ca"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_or_another_common_name_is_refused() {
    let hub = hub::TestHub::start();
    let (ca_pem, ca) = factory_ca("Line 7 device CA");
    let (_, stranger) = factory_ca("Someone else's CA");
    hub.hub()
        .add_x509_enrollment_group("line-7", &ca_pem)
        .unwrap();

    let foreign = device_tls(&hub, "gw-line7-002", &stranger);
    let refused = dps::register(&dps_config(&hub, "gw-line7-002", foreign))
        .await
        .unwrap_err();
    let text = testudo_agent::agent::error_chain(&refused);
    assert!(text.contains("gw-line7-002"), "{text}");

    let borrowed = device_tls(&hub, "gw-line7-003", &ca);
    let refused = dps::register(&dps_config(&hub, "gw-line7-004", borrowed))
        .await
        .unwrap_err();
    let text = testudo_agent::agent::error_chain(&refused);
    assert!(text.contains("gw-line7-004"), "{text}");

    for id in ["gw-line7-002", "gw-line7-003", "gw-line7-004"] {
        assert!(hub.hub().twin(id).is_err(), "{id} was created");
    }
}
