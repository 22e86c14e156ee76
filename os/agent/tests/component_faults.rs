//! Promise: faults on the way to the hub never crash the agent component or lose what it
//! holds: a hub whose certificate does not chain to the trusted CA, and a server that answers
//! garbage instead of MQTT, each give one clear log line naming the cause; the agent keeps
//! running, retries, and still serves its apps; DPS through such an endpoint stores nothing.
//! A hub (and DPS) unreachable at boot is retried until it answers; a hub that restarts is
//! reconnected to with the stored assignment, without registering again.

#[path = "common/component.rs"]
mod component;
#[path = "common/hub.rs"]
mod hub;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use component::*;
use testudo_plan::DpsAttestation;
use testudo_scheme::Rights;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn an_untrusted_hub_certificate_is_named_and_retried() {
    let hub = hub::TestHub::start();
    let credentials = hub.hub().add_device("gateway-0001").unwrap();
    let rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    // A CA that did not issue the hub's certificate.
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    put(&rig.storage_dir().join("hub-ca.pem"), &stranger.cert.pem());
    put(
        &rig.storage_dir().join("device-key"),
        &credentials.primary_key,
    );
    let agent = rig.start();
    let refused = rig.wait_line("cloud: offline:", WAIT);
    assert!(
        refused.to_lowercase().contains("certificate"),
        "the cause is named: {refused}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.running(), "{}", rig.lines().join("\n"));
    assert!(!hub.hub().is_connected("gateway-0001"));
    // Still serving apps.
    let telemetry = agent.route("app", "telemetry", Rights::Write);
    assert!(telemetry.write(b"{\"n\":1}").is_ok());
}

#[test]
fn garbage_from_the_network_is_named_and_retried_and_nothing_is_stored() {
    // A server that accepts and answers every connection with junk.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ =
                stream.write_all(b"\x16\x03\x01\xff\xffHTTP/1.1 418 teapot\r\n\r\n\x00\x01garbage");
        }
    });
    let hub = hub::TestHub::start();
    let mut rig = Rig::new("localhost", "gateway-0001", port);
    rig.use_dps("0ne00000001", DpsAttestation::SymmetricKey, port, 443);
    put(&rig.storage_dir().join("hub-ca.pem"), &hub.hub().ca_pem);
    put(
        &rig.storage_dir().join("device-key"),
        "c2VjcmV0LWtleS1mb3ItdGVzdHM=",
    );
    let agent = rig.start();
    let line = rig.wait_line("registering gateway-0001 with DPS at localhost:", WAIT);
    assert!(line.contains("cloud: offline:"), "{line}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(agent.running(), "{}", rig.lines().join("\n"));
    assert!(
        !rig.storage_dir().join("provisioning.json").exists(),
        "nothing stored"
    );
}

#[test]
fn an_unreachable_hub_at_boot_is_retried_and_a_restart_does_not_reprovision() {
    let mut hub = hub::TestHub::start();
    let key = hub.hub().add_individual_enrollment("gateway-0001").unwrap();
    let scope = hub.hub().id_scope();
    let mut rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    rig.use_dps(&scope, DpsAttestation::SymmetricKey, hub.mqtt_port, 443);
    put(&rig.storage_dir().join("hub-ca.pem"), &hub.hub().ca_pem);
    put(&rig.storage_dir().join("device-key"), &key);
    hub.stop();

    // Boot with the hub (and DPS) down: named, retried, nothing stored, still serving apps.
    let agent = rig.start();
    let line = rig.wait_line("registering gateway-0001 with DPS at localhost:", WAIT);
    assert!(line.contains("cloud: offline:"), "{line}");
    assert!(agent.running(), "{}", rig.lines().join("\n"));
    assert!(!rig.storage_dir().join("provisioning.json").exists());
    let telemetry = agent.route("app", "telemetry", Rights::Write);
    assert!(telemetry.write(b"{\"n\":1}").is_ok());

    // The hub comes up: the retry provisions and connects.
    hub.start_again();
    rig.wait_line(
        "cloud: new DPS assignment: hub localhost, device gateway-0001",
        Duration::from_secs(90),
    );
    rig.wait_line("cloud: connected to localhost:", WAIT);
    let stored = std::fs::read(rig.storage_dir().join("provisioning.json")).unwrap();

    // The hub restarts: the device reconnects as the same identity, without DPS.
    let before = rig.lines().len();
    hub.stop();
    rig.wait_line_after(before, "cloud: offline:", WAIT);
    hub.start_again();
    rig.wait_line_after(
        before,
        "cloud: connected to localhost:",
        Duration::from_secs(90),
    );
    let lines = rig.lines()[before..].join("\n");
    assert!(!lines.contains("DPS assignment"), "{lines}");
    assert_eq!(
        std::fs::read(rig.storage_dir().join("provisioning.json")).unwrap(),
        stored,
        "the stored assignment is untouched"
    );
    assert!(hub.hub().is_connected("gateway-0001"));
    assert!(agent.running());
}
