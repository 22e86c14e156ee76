//! Promise: the fault-injection hooks make the hub misbehave as documented in
//! `testudo_hub::faults` — throttling (CONNACK 3, twin 429, telemetry not acknowledged),
//! dropped connections, reply delays, refused connections — through the Rust API and
//! through `DIR/faults.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::{Duration, Instant};

use testudo_hub::test_client::TestDevice;
use testudo_hub::Faults;

#[tokio::test]
async fn throttling_answers_429_and_refuses_new_connections() {
    let (_dir, hub) = common::start();
    let mut device = common::connected_device(&hub, "dev1").await;
    hub.set_faults(Faults {
        throttle: true,
        ..Faults::default()
    });
    device
        .publish("$iothub/twin/GET/?$rid=1", b"")
        .await
        .unwrap();
    let response = device.next_publish("$iothub/twin/res/").await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/429/?$rid=1");
    device
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=2",
            b"{\"a\":1}",
        )
        .await
        .unwrap();
    let response = device.next_publish("$iothub/twin/res/").await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/429/?$rid=2");
    assert_eq!(hub.reported("dev1").unwrap()["$version"], 1);

    let key = hub.add_device("dev2").unwrap().primary_key;
    let (_, code) = TestDevice::connect(&common::options(
        &hub,
        "dev2",
        &key,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert_eq!(code, 3, "server unavailable while throttled");

    // Telemetry is not acknowledged: the connection is closed and nothing is stored.
    assert!(device
        .publish("devices/dev1/messages/events/", b"x")
        .await
        .is_err());
    assert!(hub.telemetry(None).is_empty());

    hub.set_faults(Faults::default());
    let (_, code) = TestDevice::connect(&common::options(
        &hub,
        "dev2",
        &key,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert_eq!(code, 0, "throttling lifted");
}

#[tokio::test]
async fn dropped_connections_delays_and_the_fault_file() {
    let (dir, hub) = common::start();
    let mut one = common::connected_device(&hub, "one").await;
    let mut two = common::connected_device(&hub, "two").await;
    hub.drop_connections(Some("one"));
    assert!(one.closed_within(Duration::from_secs(5)).await);
    assert!(common::eventually(|| !hub.is_connected("one")).await);
    assert!(hub.is_connected("two"));

    hub.set_faults(Faults {
        delay_ms: 400,
        ..Faults::default()
    });
    let started = Instant::now();
    two.publish("$iothub/twin/GET/?$rid=1", b"").await.unwrap();
    two.next_publish("$iothub/twin/res/200/").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "reply delayed"
    );
    hub.drop_connections(None);
    assert!(two.closed_within(Duration::from_secs(5)).await);

    // The same settings as a file, for processes without the Rust API.
    std::fs::write(
        dir.path().join("faults.json"),
        br#"{"refuseConnections": true}"#,
    )
    .unwrap();
    assert!(common::eventually(|| hub.hub().faults().refuse_connections).await);
    let key = hub.add_device("three").unwrap().primary_key;
    assert!(
        TestDevice::connect(&common::options(
            &hub,
            "three",
            &key,
            Duration::from_secs(60)
        ))
        .await
        .is_err(),
        "connection refused"
    );
    std::fs::write(dir.path().join("faults.json"), b"{}").unwrap();
    assert!(common::eventually(|| !hub.hub().faults().refuse_connections).await);
}
