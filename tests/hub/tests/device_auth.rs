//! Promise: devices are authenticated exactly as IoT Hub does it — SAS tokens over the
//! exact resource with either key, expiry honoured (refused when expired, disconnected at
//! expiry), X.509 by registered thumbprint, one connection per device.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use testudo_hub::test_client::{ConnectOptions, TestDevice};

#[tokio::test]
async fn sas_tokens_are_verified_and_expiry_is_enforced() {
    let (_dir, hub) = common::start();
    let device = hub.add_device("dev1").unwrap();
    let long = Duration::from_secs(3600);

    let (ok, code) = TestDevice::connect(&common::options(&hub, "dev1", &device.primary_key, long))
        .await
        .unwrap();
    assert_eq!(code, 0);
    ok.disconnect().await;

    let wrong_key = testudo_hub::sas::random_key();
    let (_, code) = TestDevice::connect(&common::options(&hub, "dev1", &wrong_key, long))
        .await
        .unwrap();
    assert_eq!(code, 5, "wrong key must be refused as not authorized");

    let (_, code) = TestDevice::connect(&common::options(&hub, "ghost", &device.primary_key, long))
        .await
        .unwrap();
    assert_eq!(code, 5, "unknown device");

    let mut expired = common::options(&hub, "dev1", &device.primary_key, long);
    expired.password = testudo_hub::sas::generate(
        &format!("{}/devices/dev1", hub.host),
        &device.primary_key,
        None,
        testudo_hub::clock::unix_now() - 1,
    );
    let (_, code) = TestDevice::connect(&expired).await.unwrap();
    assert_eq!(code, 5, "expired token");

    let mut other_resource = common::options(&hub, "dev1", &device.primary_key, long);
    other_resource.password = testudo_hub::sas::generate(
        &format!("{}/devices/dev2", hub.host),
        &device.primary_key,
        None,
        testudo_hub::clock::unix_now() + 3600,
    );
    let (_, code) = TestDevice::connect(&other_resource).await.unwrap();
    assert_eq!(code, 5, "token for another resource");

    let mut bad_user = common::options(&hub, "dev1", &device.primary_key, long);
    bad_user.username = "otherhub/dev1/?api-version=2021-04-12".into();
    let (_, code) = TestDevice::connect(&bad_user).await.unwrap();
    assert_eq!(code, 4, "user name for another hub");

    // A token that expires in 2 s: connected now, disconnected by the hub at expiry.
    let (mut short, code) = TestDevice::connect(&common::options(
        &hub,
        "dev1",
        &device.primary_key,
        Duration::from_secs(2),
    ))
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert!(
        short.closed_within(Duration::from_secs(5)).await,
        "hub must close the connection when the SAS token expires"
    );
}

#[tokio::test]
async fn a_second_connection_replaces_the_first() {
    let (_dir, hub) = common::start();
    let device = hub.add_device("dev1").unwrap();
    let options = common::options(&hub, "dev1", &device.primary_key, Duration::from_secs(3600));
    let (mut first, _) = TestDevice::connect(&options).await.unwrap();
    let (_second, code) = TestDevice::connect(&options).await.unwrap();
    assert_eq!(code, 0);
    assert!(first.closed_within(Duration::from_secs(5)).await);
    assert!(hub.is_connected("dev1"));
}

#[tokio::test]
async fn x509_devices_authenticate_by_thumbprint() {
    let (_dir, hub) = common::start();
    let make_cert = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    };
    let (cert_pem, key_pem, der) = make_cert("x509dev");
    let [sha1, sha256] = testudo_hub::tls::thumbprints(&der);
    assert_eq!(sha1.len(), 40);
    hub.add_x509_device("x509dev", &sha256).unwrap();
    let options = ConnectOptions {
        addr: hub.mqtt_addr,
        host: hub.host.clone(),
        ca_pem: hub.ca_pem.clone(),
        client_id: "x509dev".into(),
        username: format!("{}/x509dev/?api-version=2021-04-12", hub.host),
        password: None,
        client_cert: Some((cert_pem, key_pem)),
        keep_alive: 60,
    };
    let (device, code) = TestDevice::connect(&options).await.unwrap();
    assert_eq!(code, 0, "registered certificate");
    device.disconnect().await;

    let (other_pem, other_key, _) = make_cert("x509dev");
    let (_, code) = TestDevice::connect(&ConnectOptions {
        client_cert: Some((other_pem, other_key)),
        ..options.clone()
    })
    .await
    .unwrap();
    assert_eq!(code, 5, "unregistered certificate");
    let (_, code) = TestDevice::connect(&ConnectOptions {
        client_cert: None,
        ..options
    })
    .await
    .unwrap();
    assert_eq!(code, 5, "no certificate");
}
