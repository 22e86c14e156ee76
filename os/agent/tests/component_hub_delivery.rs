//! Promise: telemetry an app wrote to the agent component while the hub was unreachable is
//! delivered to the hub once it is reachable, through the component's `net` route only (the
//! agent's sandbox has no network of its own), each message tagged with the app that wrote
//! it; messages written while connected follow (a WASM host envelope is unwrapped).

#[path = "common/component.rs"]
mod component;
#[path = "common/hub.rs"]
mod hub;

use std::time::{Duration, Instant};

use component::*;
use testudo_scheme::Rights;

const WAIT: Duration = Duration::from_secs(30);

fn wait_for_telemetry(hub: &hub::TestHub, device: &str, count: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let messages: Vec<(String, String)> = hub
            .hub()
            .telemetry(Some(device))
            .into_iter()
            .map(|m| {
                (
                    m.properties.get("testudo-app").cloned().unwrap_or_default(),
                    m.body.unwrap_or_default(),
                )
            })
            .collect();
        if messages.len() >= count {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "the hub has {} of {count} messages: {messages:?}",
            messages.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn spooled_telemetry_reaches_the_hub_through_the_net_route() {
    let mut hub = hub::TestHub::start();
    let credentials = hub.hub().add_device("gateway-0001").unwrap();
    let ca = hub.hub().ca_pem.clone();
    hub.stop(); // unreachable until the app has written its messages

    let rig = Rig::new("localhost", "gateway-0001", hub.mqtt_port);
    put(&rig.storage_dir().join("hub-ca.pem"), &ca);
    put(
        &rig.storage_dir().join("device-key"),
        &credentials.primary_key,
    );
    let agent = rig.start();
    let telemetry = agent.route("forwarder", "telemetry", Rights::Write);
    let offline = rig.wait_line("cloud: offline: dialing localhost:", WAIT);
    assert!(
        offline.contains("net route") || offline.contains("refused"),
        "{offline}"
    );
    for n in 0..3 {
        telemetry
            .write(format!("{{\"reading\":{n}}}").as_bytes())
            .unwrap();
    }

    hub.start_again();
    rig.wait_line("cloud: connected to localhost:", WAIT);
    let delivered = wait_for_telemetry(&hub, "gateway-0001", 3);
    assert_eq!(
        delivered,
        (0..3)
            .map(|n| ("forwarder".to_owned(), format!("{{\"reading\":{n}}}")))
            .collect::<Vec<_>>()
    );
    // What the WASM host writes for `publish("aggregate", ...)`: the payload goes to the hub,
    // the topic as a property.
    telemetry
        .write(br#"{"topic":"aggregate","payload":{"count":10}}"#)
        .unwrap();
    let delivered = wait_for_telemetry(&hub, "gateway-0001", 4);
    assert_eq!(delivered[3].1, r#"{"count":10}"#);
    let last = &hub.hub().telemetry(Some("gateway-0001"))[3];
    assert_eq!(
        last.properties.get("testudo-topic").map(String::as_str),
        Some("aggregate")
    );

    // Everything acknowledged by the hub is done: nothing pending, nothing resent later.
    let deadline = Instant::now() + WAIT;
    while telemetry.fstat().unwrap().size != 0 {
        assert!(Instant::now() < deadline, "messages still pending");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(agent.running(), "{}", rig.lines().join("\n"));
    agent.stop_with(libc::SIGTERM);
}
