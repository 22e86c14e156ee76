//! Promise: state survives an emulator restart — CA, service key, devices, twins with their
//! versions, telemetry log — and devices reconnect with their old credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use serde_json::json;
use testudo_hub::test_client::TestDevice;
use testudo_hub::{Emulator, EmulatorConfig};

#[tokio::test]
async fn restart_keeps_registry_twins_ca_and_telemetry() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Emulator::start(EmulatorConfig::new(dir.path())).unwrap();
    let ca_before = hub.ca_pem.clone();
    let service_before = hub.service_connection_string();
    let mut device = common::connected_device_with(&hub, "dev1").await;
    device
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=1",
            br#"{"fw":"2"}"#,
        )
        .await
        .unwrap();
    device.next_publish("$iothub/twin/res/").await.unwrap();
    device
        .publish("devices/dev1/messages/events/", b"hello")
        .await
        .unwrap();
    hub.set_desired("dev1", &json!({"interval": 7})).unwrap();
    let key = hub.hub().device("dev1").unwrap();
    hub.shutdown();
    assert!(
        device.closed_within(Duration::from_secs(5)).await,
        "shutdown closes sessions"
    );

    let telemetry = std::fs::read_to_string(dir.path().join("telemetry.jsonl")).unwrap();
    assert!(telemetry.contains("\"body\":\"hello\""), "{telemetry}");
    for leftover in std::fs::read_dir(dir.path().join("devices")).unwrap() {
        let name = leftover.unwrap().file_name();
        assert!(
            !name.to_string_lossy().ends_with(".tmp"),
            "no temp files left"
        );
    }

    let hub = Emulator::start(EmulatorConfig::new(dir.path())).unwrap();
    assert_eq!(hub.ca_pem, ca_before, "CA is kept");
    assert_eq!(
        hub.service_connection_string()
            .split(";SharedAccessKey=")
            .nth(1),
        service_before.split(";SharedAccessKey=").nth(1),
        "service key is kept"
    );
    let twin = hub.twin("dev1").unwrap();
    assert_eq!(twin["properties"]["reported"]["fw"], "2");
    assert_eq!(twin["properties"]["desired"]["interval"], 7);
    assert_eq!(twin["properties"]["desired"]["$version"], 2);
    assert_eq!(hub.hub().device("dev1").unwrap(), key);
    let primary = match key.authentication {
        testudo_hub::registry::DeviceAuth::Sas { primary_key, .. } => primary_key,
        other => panic!("dev1 was added with SAS keys, got {other:?}"),
    };
    let (device, code) = TestDevice::connect(&common::options(
        &hub,
        "dev1",
        &primary,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert_eq!(code, 0, "old credentials still work");
    device.disconnect().await;
}
