//! Promise: a device provisions through DPS with TPM attestation (HTTPS: EK + SRK -> 401 with
//! `authenticationKey` -> ActivateCredential + Import in swtpm -> TPM-signed registration SAS ->
//! assigned), then connects to the assigned hub with SAS tokens signed inside the TPM and gets
//! its twin; the imported key cannot be read out of the TPM; a TPM whose EK is not enrolled is
//! refused.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;
use testudo_testkit::swtpm;

use serde_json::json;
use testudo_agent::dps_tpm::{self, TpmDpsConfig};
use testudo_agent::tpm::{self, DEFAULT_KEY_HANDLE};
use testudo_agent::{AgentConfig, AgentError, AgentEvent, Authentication};
use tss_esapi::handles::{PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::session_handles::AuthSession;

fn dps_config(hub: &hub::TestHub, registration_id: &str, tcti: &str) -> TpmDpsConfig {
    TpmDpsConfig {
        host: hub.hub().host.clone(),
        port: hub.hub().https_addr.port(),
        id_scope: hub.hub().id_scope(),
        registration_id: registration_id.into(),
        tcti: tcti.into(),
        key_handle: DEFAULT_KEY_HANDLE,
        tls: hub.tls(),
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_attested_device_provisions_and_connects_with_tpm_signed_sas() {
    let swtpm = swtpm::start();
    let hub = hub::TestHub::start();
    let keys = dps_tpm::read_public_keys(&swtpm.tcti).unwrap();
    hub.hub()
        .add_tpm_enrollment("tpm-dev-01", &keys.endorsement_key)
        .unwrap();
    hub.hub()
        .set_desired("tpm-dev-01", &json!({"interval": 7}))
        .expect_err("the device must not exist before DPS assigns it");

    let registration =
        dps_tpm::register_with_tpm_async(dps_config(&hub, "tpm-dev-01", &swtpm.tcti))
            .await
            .unwrap();
    assert_eq!(registration.assignment.device_id, "tpm-dev-01");
    assert_eq!(registration.assignment.assigned_hub, hub.hub().host);
    hub.hub()
        .set_desired("tpm-dev-01", &json!({"interval": 7}))
        .unwrap();

    // Connect with tokens signed by the imported key inside the TPM; the hub verifies them
    // with the key it handed to DPS.
    let auth = Authentication::Sas {
        signer: registration.signer,
        token_ttl: Duration::from_secs(3600),
    };
    let mut config = AgentConfig::new(
        &registration.assignment.assigned_hub,
        &registration.assignment.device_id,
        hub.tls(),
        auth,
    );
    hub.point_at_emulator(&mut config);
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_event(&mut events, Duration::from_secs(20), |event| match event {
        AgentEvent::FullTwin { .. } => Some(()),
        _ => None,
    })
    .await;
    let desired = hub::next_desired(&mut events).await;
    assert_eq!(desired.desired["interval"], 7, "{desired:?}");
    assert!(hub.hub().is_connected("tpm-dev-01"));
    agent.shutdown().await;
    drop(events);

    // The key stays in the TPM: TPM2_Unseal on the imported HMAC (sign) key is refused.
    // (The signer's TPM connection closes with the agent; swtpm serves one client at a time.)
    let mut context = None;
    for _ in 0..50 {
        match tpm::open_context(&swtpm.tcti) {
            Ok(opened) => {
                context = Some(opened);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut context = context.expect("reopening the TPM");
    let key = context
        .tr_from_tpm_public(TpmHandle::Persistent(
            PersistentTpmHandle::new(DEFAULT_KEY_HANDLE).unwrap(),
        ))
        .unwrap();
    let unsealed = context.execute_with_session(Some(AuthSession::Password), |ctx| ctx.unseal(key));
    assert!(unsealed.is_err(), "the TPM released the DPS key");
    let (public, _, _) = context.read_public(key.into()).unwrap();
    let attributes = public.object_attributes();
    assert!(attributes.sign_encrypt() && !attributes.decrypt());
    assert!(
        public.auth_policy().is_empty(),
        "no policy may authorize Duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_with_an_unenrolled_endorsement_key_is_refused() {
    let enrolled = swtpm::start();
    let other = swtpm::start();
    let hub = hub::TestHub::start();
    let keys = dps_tpm::read_public_keys(&enrolled.tcti).unwrap();
    hub.hub()
        .add_tpm_enrollment("tpm-dev-02", &keys.endorsement_key)
        .unwrap();

    let refused = dps_tpm::register_with_tpm_async(dps_config(&hub, "tpm-dev-02", &other.tcti))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AgentError::Provision { reason, .. } if reason.contains("refused the TPM")),
        "{refused:?}"
    );
    assert!(hub.hub().twin("tpm-dev-02").is_err(), "device was created");
}

#[test]
fn tpm_whose_srk_is_not_rsa_is_refused_clearly() {
    // DPS can only wrap keys to an RSA SRK: a TPM provisioned earlier with an ECC SRK at
    // 0x81000001 must be told so, not fail somewhere inside TPM2_Import.
    use tss_esapi::abstraction::{ek, AsymmetricAlgorithmSelection};
    use tss_esapi::interface_types::dynamic_handles::Persistent;
    use tss_esapi::interface_types::ecc::EccCurve;
    use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};

    let swtpm = swtpm::start();
    let mut context = tpm::open_context(&swtpm.tcti).unwrap();
    let ecc_template = ek::create_ek_public_from_default_template_2(
        AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        None,
    )
    .unwrap();
    let ecc = context
        .execute_with_nullauth_session(|ctx| {
            ctx.create_primary(Hierarchy::Owner, ecc_template, None, None, None, None)
        })
        .unwrap();
    let srk = Persistent::Persistent(PersistentTpmHandle::new(tpm::SRK_HANDLE).unwrap());
    context
        .execute_with_nullauth_session(|ctx| {
            ctx.evict_control(Provision::Owner, ecc.key_handle.into(), srk)
        })
        .unwrap();
    context.flush_context(ecc.key_handle.into()).unwrap();
    drop(context);

    let refused = dps_tpm::read_public_keys(&swtpm.tcti).unwrap_err();
    assert!(
        matches!(&refused, AgentError::TpmKey { handle, reason }
            if *handle == tpm::SRK_HANDLE && reason.contains("RSA")),
        "{refused:?}"
    );
}
