//! Promise: with the plan's identity `x509` and no `device-key.pem` in its storage, the agent
//! component authenticates with its device certificate whose ECDSA P-256 key stays in the TPM
//! (persisted at 0x81000101 at the factory), every TLS signature made by `TPM2_Sign` through
//! its `tpm` route (the real `tpm` driver forwarding to swtpm): it connects to a hub that
//! registered the certificate's thumbprint, and provisions itself through DPS by X.509
//! attestation (an individual enrollment by thumbprint) with the same TPM-held key. Without
//! the key in the TPM it stays up and says why.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[path = "common/component.rs"]
mod component;
#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use component::*;
use testudo_agent::tpm::X509_KEY_HANDLE;
use testudo_agent::tpm_x509::{create_ecdsa_key, TpmEcdsaKey};
use testudo_plan::DpsAttestation;
use testudo_testkit::swtpm;

const WAIT: Duration = Duration::from_secs(30);

/// A TPM (state directory) holding an ECDSA key at [`X509_KEY_HANDLE`], made as at the
/// factory (`testudo agent create-x509-key`), and the device certificate for it.
fn factory_tpm(device_id: &str) -> (tempfile::TempDir, String, String) {
    let tcp_tpm = swtpm::start();
    create_ecdsa_key(&tcp_tpm.tcti, X509_KEY_HANDLE).unwrap();
    let key = TpmEcdsaKey::open(&tcp_tpm.tcti, X509_KEY_HANDLE).unwrap();
    let cert = key.device_certificate(device_id).unwrap();
    drop(key);
    (
        tcp_tpm.stop_keeping_state(),
        cert.pem,
        cert.sha256_thumbprint,
    )
}

fn rig_with_tpm_x509(hub: &hub::TestHub, socket: &std::path::Path, cert: &str) -> Rig {
    let mut rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    rig.identity = "x509".into();
    rig.tpm_socket = Some(socket.to_path_buf());
    put(&rig.storage_dir().join("hub-ca.pem"), &hub.hub().ca_pem);
    put(&rig.storage_dir().join("device-cert.pem"), cert);
    rig
}

#[test]
fn connects_with_the_tpm_held_certificate_key_through_the_route() {
    let hub = hub::TestHub::start();
    let (state, cert, thumbprint) = factory_tpm("gateway-0001");
    hub.hub()
        .add_x509_device("gateway-0001", &thumbprint)
        .unwrap();
    let socket_dir = tempfile::tempdir().unwrap();
    let tpm = swtpm::start_unixio(state.path(), &socket_dir.path().join("tpm.sock"));

    let rig = rig_with_tpm_x509(&hub, &tpm.socket, &cert);
    let agent = rig.start();
    rig.wait_line("cloud: connected to localhost:", WAIT);
    rig.wait_line("cloud: device properties reported", WAIT);
    assert!(hub.hub().is_connected("gateway-0001"));
    assert!(!rig.storage_dir().join("device-key.pem").exists());
    agent.stop_with(libc::SIGTERM);
}

#[test]
fn provisions_through_dps_by_x509_with_the_tpm_held_key() {
    let hub = hub::TestHub::start();
    let (state, cert, thumbprint) = factory_tpm("gateway-0001");
    hub.hub()
        .add_x509_enrollment("gateway-0001", &thumbprint)
        .unwrap();
    let socket_dir = tempfile::tempdir().unwrap();
    let tpm = swtpm::start_unixio(state.path(), &socket_dir.path().join("tpm.sock"));

    let mut rig = rig_with_tpm_x509(&hub, &tpm.socket, &cert);
    rig.use_dps(
        &hub.hub().id_scope(),
        DpsAttestation::X509,
        hub.mqtt_port,
        443,
    );
    let agent = rig.start();
    rig.wait_line("cloud: new DPS assignment", WAIT);
    rig.wait_line("cloud: connected to localhost:", WAIT);
    assert!(hub.hub().is_connected("gateway-0001"));
    assert!(rig.storage_dir().join("provisioning.json").exists());
    agent.stop_with(libc::SIGTERM);
}

#[test]
fn without_the_key_in_the_tpm_it_stays_up_and_says_why() {
    let hub = hub::TestHub::start();
    let state = tempfile::tempdir().unwrap();
    let socket_dir = tempfile::tempdir().unwrap();
    let tpm = swtpm::start_unixio(state.path(), &socket_dir.path().join("tpm.sock"));
    let cert = rcgen::generate_simple_self_signed(vec!["gateway-0001".to_owned()])
        .unwrap()
        .cert
        .pem();

    let rig = rig_with_tpm_x509(&hub, &tpm.socket, &cert);
    let agent = rig.start();
    let line = rig.wait_line("cloud: offline", WAIT);
    assert!(
        line.contains("the TPM key at 0x81000101 cannot sign") && line.contains("response code"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.running(), "{}", rig.lines().join("\n"));
    agent.stop_with(libc::SIGTERM);
}
