//! Promise: with the plan's identity `tpm_sas`, the agent component signs its SAS tokens in
//! the TPM through its `tpm` route (the `tpm` driver forwarding to swtpm), holding no key
//! itself, and its telemetry reaches the hub; without the key in the TPM it stays up and
//! says why it cannot connect.

#[path = "common/component.rs"]
mod component;
#[path = "common/hub.rs"]
mod hub;

use std::time::{Duration, Instant};
use testudo_testkit::swtpm;

use component::*;
use testudo_agent::tpm::{import_base64_hmac_key, DEFAULT_KEY_HANDLE};
use testudo_scheme::Rights;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn signs_with_the_tpm_through_its_route_and_delivers() {
    let hub = hub::TestHub::start();
    let credentials = hub.hub().add_device("gateway-0001").unwrap();

    // Provisioning: the device key goes into the TPM (over the swtpm TCTI, as at the
    // factory); the agent's storage never holds it.
    let tcp_tpm = swtpm::start();
    import_base64_hmac_key(&tcp_tpm.tcti, DEFAULT_KEY_HANDLE, &credentials.primary_key).unwrap();
    let state = tcp_tpm.stop_keeping_state();
    let socket_dir = tempfile::tempdir().unwrap();
    let tpm = swtpm::start_unixio(state.path(), &socket_dir.path().join("tpm.sock"));

    let mut rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    rig.identity = "tpm_sas".into();
    rig.tpm_socket = Some(tpm.socket.clone());
    put(&rig.storage_dir().join("hub-ca.pem"), &hub.hub().ca_pem);
    let agent = rig.start();
    rig.wait_line("cloud: connected to localhost:", WAIT);
    assert!(!rig.storage_dir().join("device-key").exists());

    let telemetry = agent.route("forwarder", "telemetry", Rights::Write);
    telemetry.write(b"{\"signed\":\"in the tpm\"}").unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let messages = hub.hub().telemetry(Some("gateway-0001"));
        if let Some(message) = messages.first() {
            assert_eq!(message.body.as_deref(), Some("{\"signed\":\"in the tpm\"}"));
            break;
        }
        assert!(Instant::now() < deadline, "{}", rig.lines().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.stop_with(libc::SIGTERM);
}

#[test]
fn without_a_key_in_the_tpm_it_stays_up_and_says_why() {
    let socket_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let tpm = swtpm::start_unixio(state.path(), &socket_dir.path().join("tpm.sock"));
    let mut rig = Rig::new("localhost", "gateway-0001", unused_port());
    rig.identity = "tpm_sas".into();
    rig.tpm_socket = Some(tpm.socket.clone());
    put(&rig.storage_dir().join("hub-ca.pem"), &hub_ca());
    let agent = rig.start();
    let line = rig.wait_line("cloud: offline", WAIT);
    assert!(
        line.contains("the device key at 0x81000100 cannot sign"),
        "{line}"
    );
    assert!(line.contains("response code"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.running(), "{}", rig.lines().join("\n"));
    agent.stop_with(libc::SIGTERM);
}

fn hub_ca() -> String {
    rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed CA")
        .cert
        .pem()
}
