//! Promise: an agent connects to the hub, receives the full twin, then desired patches in
//! order, and its reported patches (the echo example) land in the hub's twin.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use serde_json::json;
use testudo_agent::{AgentEvent, ChangeKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_changes_arrive_in_order_and_reported_patches_land() {
    let hub = hub::TestHub::start();
    let config = hub.device("gw-01");
    hub.hub()
        .set_desired("gw-01", &json!({"app": {"image": "a"}, "level": 1}))
        .unwrap();

    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_event(&mut events, Duration::from_secs(20), |e| match e {
        AgentEvent::Connected { connection } => Some(connection),
        _ => None,
    })
    .await;
    // After connecting: the full twin, as one Full change.
    let first = hub::next_desired(&mut events).await;
    assert_eq!(first.kind, ChangeKind::Full);
    assert_eq!(first.desired["app"], json!({"image": "a"}));
    let v0 = first.version;

    // Patches pushed by the service arrive in order, merged.
    let v1 = hub
        .hub()
        .set_desired("gw-01", &json!({"level": 2}))
        .unwrap();
    let v2 = hub
        .hub()
        .set_desired("gw-01", &json!({"app": {"image": null, "tag": "b"}}))
        .unwrap();
    let one = hub::next_desired(&mut events).await;
    let two = hub::next_desired(&mut events).await;
    assert_eq!((one.version, two.version), (v1, v2));
    assert_eq!(v1, v0 + 1);
    assert_eq!(one.kind, ChangeKind::Patch);
    assert_eq!(
        two.desired,
        serde_json::from_value(json!({"app": {"tag": "b"}, "level": 2})).unwrap()
    );

    // Reported patches are acknowledged with the new reported version and visible in the hub.
    let version = agent
        .report(&json!({"firmware": "1.0", "nested": {"a": 1}}))
        .await
        .unwrap();
    assert!(version.is_some());
    let reported = hub.hub().reported("gw-01").unwrap();
    assert_eq!(reported["firmware"], "1.0");
    assert_eq!(reported["$version"].as_u64(), version);

    // Telemetry is acknowledged and captured by the hub.
    agent
        .send_telemetry(b"{\"t\":21.5}".to_vec(), &[("kind", "temp")])
        .await
        .unwrap();
    let captured = hub.hub().telemetry(Some("gw-01"));
    assert_eq!(captured.len(), 1);

    agent.shutdown().await;
    hub::eventually(
        Duration::from_secs(5),
        "the hub sees the device disconnect",
        || !hub.hub().is_connected("gw-01"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_example_reports_device_info_and_mirrors_desired() {
    let hub = hub::TestHub::start();
    let config = hub.device("echo-01");
    let (agent, events) = testudo_agent::spawn(config);
    let example = tokio::spawn(testudo_agent::echo::run(agent.clone(), events, |_| {}));
    hub::eventually(Duration::from_secs(20), "device info is reported", || {
        hub.hub()
            .reported("echo-01")
            .map(|r| r["deviceInfo"]["agent"] == "testudo-agent")
            .unwrap_or(false)
    })
    .await;
    let version = hub
        .hub()
        .set_desired("echo-01", &json!({"mode": "eco", "limits": {"cpu": 2}}))
        .unwrap();
    hub::eventually(
        Duration::from_secs(20),
        "the desired change is echoed",
        || {
            hub.hub()
                .reported("echo-01")
                .map(|r| {
                    r["echoVersion"] == version
                        && r["echo"]["limits"]["cpu"] == 2
                        && r["echo"]["mode"] == "eco"
                })
                .unwrap_or(false)
        },
    )
    .await;
    agent.shutdown().await;
    example.abort();
}
