//! Promise: the agent component with a DPS section in its plan provisions itself through its
//! `net` route (symmetric-key attestation here), keeps the assignment in its storage and
//! connects to the assigned hub; at its next start it reuses the stored assignment without
//! asking DPS; when the hub refuses a stored identity it forgets it and registers again; when
//! DPS refuses (no enrollment, wrong ID scope) it says why on its log route, keeps running
//! and retries, and writes no assignment.

#[path = "common/component.rs"]
mod component;
#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use component::*;
use testudo_agent::provisioning::StoredAssignment;
use testudo_plan::DpsAttestation;

const WAIT: Duration = Duration::from_secs(30);

fn rig_with_dps(hub: &hub::TestHub, scope: &str, key: Option<&str>) -> Rig {
    let mut rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    rig.use_dps(scope, DpsAttestation::SymmetricKey, hub.mqtt_port, 443);
    put(&rig.storage_dir().join("hub-ca.pem"), &hub.hub().ca_pem);
    if let Some(key) = key {
        put(&rig.storage_dir().join("device-key"), key);
    }
    rig
}

#[test]
fn registers_through_dps_then_reuses_the_stored_assignment() {
    let hub = hub::TestHub::start();
    let key = hub.hub().add_individual_enrollment("gateway-0001").unwrap();
    let rig = rig_with_dps(&hub, &hub.hub().id_scope(), Some(&key));
    let agent = rig.start();
    rig.wait_line(
        "cloud: new DPS assignment: hub localhost, device gateway-0001",
        WAIT,
    );
    rig.wait_line("cloud: connected to localhost:", WAIT);
    assert_eq!(
        rig.stored_assignment(),
        Some(StoredAssignment {
            id_scope: hub.hub().id_scope(),
            registration_id: "gateway-0001".into(),
            assigned_hub: "localhost".into(),
            device_id: "gateway-0001".into(),
        })
    );
    assert!(hub.hub().is_connected("gateway-0001"));
    agent.stop_with(libc::SIGTERM);

    let before = rig.lines().len();
    let _again = rig.start();
    rig.wait_line_after(before, "cloud: connected to localhost:", WAIT);
    let lines = rig.lines()[before..].join("\n");
    assert!(
        lines.contains("cloud: stored DPS assignment: hub localhost, device gateway-0001"),
        "{lines}"
    );
    assert!(!lines.contains("new DPS assignment"), "{lines}");
}

#[test]
fn a_refused_stored_identity_is_forgotten_and_the_device_registers_again() {
    let hub = hub::TestHub::start();
    let key = hub.hub().add_individual_enrollment("gateway-0001").unwrap();
    let rig = rig_with_dps(&hub, &hub.hub().id_scope(), Some(&key));
    // An assignment from before: a device the hub no longer knows.
    let ghost = StoredAssignment {
        id_scope: hub.hub().id_scope(),
        registration_id: "gateway-0001".into(),
        assigned_hub: "localhost".into(),
        device_id: "ghost".into(),
    };
    put(
        &rig.storage_dir().join("provisioning.json"),
        &serde_json::to_string(&Some(&ghost)).unwrap(),
    );
    let _agent = rig.start();
    rig.wait_line(
        "cloud: stored DPS assignment: hub localhost, device ghost",
        WAIT,
    );
    rig.wait_line("forgetting the DPS assignment and registering again", WAIT);
    rig.wait_line(
        "cloud: new DPS assignment: hub localhost, device gateway-0001",
        WAIT,
    );
    rig.wait_line("cloud: connected to localhost:", WAIT);
    assert_eq!(
        rig.stored_assignment().map(|s| s.device_id),
        Some("gateway-0001".into())
    );
}

#[test]
fn dps_refusals_are_logged_and_retried_without_crashing_or_storing() {
    let hub = hub::TestHub::start();
    for (scope, enrolled) in [
        (hub.hub().id_scope(), false),
        ("0ne-not-ours".to_owned(), true),
    ] {
        let key = if enrolled {
            hub.hub().add_individual_enrollment("gateway-0001").unwrap()
        } else {
            // A well-formed key no enrollment knows.
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned()
        };
        let rig = rig_with_dps(&hub, &scope, Some(&key));
        let agent = rig.start();
        let refused = rig.wait_line("registering gateway-0001 with DPS at localhost:", WAIT);
        assert!(refused.contains("cloud: offline:"), "{refused}");
        // It retries (the log says a reason once, so wait for the backoff to pass) and
        // stays up.
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            agent.running(),
            "the agent exited:\n{}",
            rig.lines().join("\n")
        );
        assert_eq!(
            rig.stored_assignment(),
            None,
            "nothing stored for a refused registration"
        );
        assert!(!hub.hub().is_connected("gateway-0001"));
    }
}
