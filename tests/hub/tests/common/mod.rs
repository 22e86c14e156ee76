//! Shared helpers for the emulator's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
#![allow(dead_code)]

use std::time::Duration;

use testudo_hub::test_client::{ConnectOptions, TestDevice};
use testudo_hub::{Emulator, EmulatorConfig, RunningHub};

/// Starts an emulator on free ports in a fresh temp dir.
pub fn start() -> (tempfile::TempDir, RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    let hub = Emulator::start(EmulatorConfig::new(dir.path())).unwrap();
    (dir, hub)
}

/// Options for device `id` with key `key`, token valid for `ttl`.
pub fn options(hub: &RunningHub, id: &str, key: &str, ttl: Duration) -> ConnectOptions {
    ConnectOptions::sas_device(hub.mqtt_addr, &hub.host, &hub.ca_pem, id, key, ttl)
}

/// Same as [`connected_device`] (kept for readability in restart tests).
pub async fn connected_device_with(hub: &RunningHub, id: &str) -> TestDevice {
    connected_device(hub, id).await
}

/// Registers `id` and connects it, subscribed to twin responses, desired patches and methods.
pub async fn connected_device(hub: &RunningHub, id: &str) -> TestDevice {
    let credentials = hub.add_device(id).unwrap();
    let (mut device, code) = TestDevice::connect(&options(
        hub,
        id,
        &credentials.primary_key,
        Duration::from_secs(3600),
    ))
    .await
    .unwrap();
    assert_eq!(code, 0, "CONNACK");
    let granted = device
        .subscribe(&[
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
        ])
        .await
        .unwrap();
    assert_eq!(granted, vec![1, 1, 1]);
    device
}

/// Waits (bounded) until `predicate` holds.
pub async fn eventually(mut predicate: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if predicate() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    predicate()
}
