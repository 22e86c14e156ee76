//! Promise: the agent component reports the device (DeviceInformation and testudo's version,
//! plan hash and slot) when it connects, answers the `diagnostic` direct method, answers
//! unknown methods 404 with a JSON body, and answers `reboot` 200 and then asks init's
//! `power` capability (its `power` route) to reboot; without a `power` route `reboot` is
//! refused (403) and nothing is asked.

#[path = "common/component.rs"]
mod component;
#[path = "common/hub.rs"]
mod hub;

use std::time::{Duration, Instant};

use component::*;
use serde_json::{json, Value};
use testudo_init::{PowerAction, PowerRequests};

const WAIT: Duration = Duration::from_secs(30);

fn reported_device(hub: &hub::TestHub, device: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let twin = hub
            .hub()
            .twin(device)
            .expect("the twin of a registered device");
        let reported = &twin["properties"]["reported"];
        if !reported["deviceInformation"].is_null() {
            return reported.clone();
        }
        assert!(Instant::now() < deadline, "nothing reported: {twin}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rig_for(hub: &hub::TestHub, power: Option<PowerRequests>) -> Rig {
    let credentials = hub.hub().add_device("gateway-0001").expect("a new device");
    let mut rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    rig.power = power;
    rig.model_id = Some("dtmi:testudo:gateway;1".into());
    put(&rig.storage_dir().join("hub-ca.pem"), &hub.hub().ca_pem);
    put(
        &rig.storage_dir().join("device-key"),
        &credentials.primary_key,
    );
    rig
}

#[test]
fn reports_the_device_answers_methods_and_reboots_through_init() {
    let hub = hub::TestHub::start();
    let (requests, _wake) = PowerRequests::new().unwrap();
    let rig = rig_for(&hub, Some(requests.clone()));
    let _agent = rig.start();
    rig.wait_line("cloud: connected to localhost:", WAIT);

    rig.wait_line("cloud: device properties reported", WAIT);
    let reported = reported_device(&hub, "gateway-0001");
    assert_eq!(reported["deviceInformation"]["manufacturer"], "testudo");
    assert_eq!(
        reported["deviceInformation"]["processorArchitecture"],
        "x86_64"
    );
    let plan_hash = reported["testudo"]["planHash"].as_str().unwrap().to_owned();
    assert_eq!(plan_hash.len(), 64, "{reported}");
    let version = reported["testudo"]["version"].as_str().unwrap();
    assert_eq!(
        reported["deviceInformation"]["swVersion"],
        format!("{version}+{}", &plan_hash[..12])
    );

    let call = |method: &str| {
        hub.hub()
            .invoke_method_blocking("gateway-0001", method, &json!({}), Duration::from_secs(10))
            .unwrap()
    };
    let diagnostic = call("diagnostic");
    assert_eq!(diagnostic.status, 200);
    assert_eq!(diagnostic.payload["planHash"], plan_hash.as_str());
    assert_eq!(diagnostic.payload["canReboot"], true);

    let unknown = call("format-disk");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.payload["error"]
            .as_str()
            .is_some_and(|e| e.contains("format-disk")),
        "{}",
        unknown.payload
    );
    assert_eq!(requests.pending(), None, "nothing asked before reboot");

    let reboot = call("reboot");
    assert_eq!(reboot.status, 200);
    assert_eq!(reboot.payload, json!({"status": "rebooting"}));
    let deadline = Instant::now() + WAIT;
    while requests.pending().is_none() {
        assert!(Instant::now() < deadline, "init was never asked to reboot");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        requests.pending(),
        Some((PowerAction::Reboot, "agent".to_owned()))
    );
}

#[test]
fn without_a_power_route_reboot_is_refused() {
    let hub = hub::TestHub::start();
    let rig = rig_for(&hub, None);
    let _agent = rig.start();
    rig.wait_line("cloud: connected to localhost:", WAIT);
    let reboot = hub
        .hub()
        .invoke_method_blocking(
            "gateway-0001",
            "reboot",
            &json!({}),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(reboot.status, 403);
    assert!(reboot.payload["error"]
        .as_str()
        .is_some_and(|e| e.contains("power")));
}
