//! Promise: a device provisions itself through DPS (symmetric-key attestation over MQTT) with
//! its key held in the TPM, then connects to the assigned hub with TPM-signed SAS tokens and
//! syncs its twin. Enrollment groups work with the derived device key.

#[path = "common/hub.rs"]
mod hub;

use std::sync::Arc;
use std::time::Duration;
use testudo_testkit::swtpm;

use serde_json::json;
use testudo_agent::dps::{self, DpsConfig};
use testudo_agent::tpm::{self, TpmHmacSigner, DEFAULT_KEY_HANDLE};
use testudo_agent::{AgentConfig, Authentication, SasSigner, SoftwareKey};

fn dps_config(hub: &hub::TestHub, registration_id: &str, signer: Arc<dyn SasSigner>) -> DpsConfig {
    DpsConfig {
        host: hub.hub().host.clone(),
        port: hub.mqtt_port,
        id_scope: hub.hub().id_scope(),
        registration_id: registration_id.into(),
        tls: hub.tls(),
        signer: Some(signer),
        timeout: Duration::from_secs(30),
        dialer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_backed_device_provisions_and_connects() {
    let swtpm = swtpm::start();
    let hub = hub::TestHub::start();
    let enrollment_key = hub.hub().add_individual_enrollment("prov-01").unwrap();
    tpm::import_base64_hmac_key(&swtpm.tcti, DEFAULT_KEY_HANDLE, &enrollment_key).unwrap();
    drop(enrollment_key); // from here on only the TPM has it
    let signer: Arc<dyn SasSigner> =
        Arc::new(TpmHmacSigner::open(&swtpm.tcti, DEFAULT_KEY_HANDLE).unwrap());

    let assignment = dps::register(&dps_config(&hub, "prov-01", signer.clone()))
        .await
        .unwrap();
    assert_eq!(assignment.device_id, "prov-01");
    assert!(
        assignment.assigned_hub.starts_with(&hub.hub().host),
        "{}",
        assignment.assigned_hub
    );

    let auth = Authentication::Sas {
        signer,
        token_ttl: Duration::from_secs(3600),
    };
    let hub_host = assignment
        .assigned_hub
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let mut config = AgentConfig::new(&hub_host, &assignment.device_id, hub.tls(), auth);
    hub.point_at_emulator(&mut config);
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_desired(&mut events).await;
    agent
        .report(&json!({"provisioned": "dps+tpm"}))
        .await
        .unwrap();
    assert_eq!(
        hub.hub().reported("prov-01").unwrap()["provisioned"],
        "dps+tpm"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_group_device_key_is_derived() {
    let hub = hub::TestHub::start();
    let group_key = hub.hub().add_enrollment_group("fleet").unwrap();
    let device_key = SoftwareKey::from_base64(&group_key, "fleet")
        .unwrap()
        .derive_device_key("gw-77");
    let signer: Arc<dyn SasSigner> =
        Arc::new(SoftwareKey::from_base64(&device_key, "gw-77").unwrap());
    let assignment = dps::register(&dps_config(&hub, "gw-77", signer))
        .await
        .unwrap();
    assert_eq!(assignment.device_id, "gw-77");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_clearly() {
    let hub = hub::TestHub::start();
    hub.hub().add_individual_enrollment("prov-02").unwrap();
    let signer: Arc<dyn SasSigner> = Arc::new(SoftwareKey::from_bytes(vec![1; 32]));
    let err = dps::register(&dps_config(&hub, "prov-02", signer))
        .await
        .unwrap_err();
    let text = testudo_agent::agent::error_chain(&err);
    assert!(
        text.contains("prov-02") && text.contains("refused"),
        "{text}"
    );
}
