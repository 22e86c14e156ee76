//! Promise: the TLS server certificate is issued by the persisted local CA for `--host`
//! (and only that name); changing the host re-issues it under the same CA.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::Duration;

use testudo_hub::test_client::{ConnectOptions, TestDevice};
use testudo_hub::{Emulator, EmulatorConfig, RunningHub};

fn options(hub: &RunningHub, tls_name: &str, key: &str) -> ConnectOptions {
    let mut options = ConnectOptions::sas_device(
        hub.mqtt_addr,
        &hub.host,
        &hub.ca_pem,
        "dev",
        key,
        Duration::from_secs(60),
    );
    options.host = tls_name.to_owned();
    options
}

#[tokio::test]
async fn certificate_names_the_hub_host() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Emulator::start(EmulatorConfig {
        host: "hub.testudo.test".into(),
        ..EmulatorConfig::new(dir.path())
    })
    .unwrap();
    let key = hub.add_device("dev").unwrap().primary_key;
    let (device, code) = TestDevice::connect(&options(&hub, "hub.testudo.test", &key))
        .await
        .unwrap();
    assert_eq!(code, 0);
    device.disconnect().await;
    let wrong_name = TestDevice::connect(&options(&hub, "localhost", &key)).await;
    assert!(
        wrong_name.is_err(),
        "certificate must not be valid for other names"
    );
    let ca = hub.ca_pem.clone();
    let server_pem = std::fs::read_to_string(dir.path().join("server.pem")).unwrap();
    hub.shutdown();

    let hub = Emulator::start(EmulatorConfig::new(dir.path())).unwrap();
    assert_eq!(hub.ca_pem, ca, "same CA after a host change");
    assert_ne!(
        std::fs::read_to_string(dir.path().join("server.pem")).unwrap(),
        server_pem,
        "server certificate re-issued for the new host"
    );
    assert!(hub
        .hub()
        .device_connection_string("dev")
        .unwrap()
        .starts_with("HostName=localhost;"));
    let (device, code) = TestDevice::connect(&options(&hub, "localhost", &key))
        .await
        .unwrap();
    assert_eq!(
        code, 0,
        "device keys survive; the new host name is used in tokens"
    );
    device.disconnect().await;
}
