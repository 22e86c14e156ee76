//! Promise: DPS symmetric-key provisioning over MQTT (individual enrollments and enrollment
//! groups with derived keys) assigns the device to the hub, which then accepts it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use serde_json::Value;
use testudo_hub::test_client::{ConnectOptions, TestDevice};
use testudo_hub::{clock, sas, RunningHub};

async fn provision(hub: &RunningHub, registration_id: &str, key: &str) -> Result<Value, u8> {
    let scope = hub.id_scope();
    let options = ConnectOptions {
        addr: hub.mqtt_addr,
        host: hub.host.clone(),
        ca_pem: hub.ca_pem.clone(),
        client_id: registration_id.to_owned(),
        username: format!("{scope}/registrations/{registration_id}/api-version=2019-03-31"),
        password: sas::generate(
            &format!("{scope}/registrations/{registration_id}"),
            key,
            Some("registration"),
            clock::unix_now() + 300,
        ),
        client_cert: None,
        keep_alive: 60,
    };
    let (mut client, code) = TestDevice::connect(&options).await.unwrap();
    if code != 0 {
        return Err(code);
    }
    assert_eq!(
        client
            .subscribe(&["$dps/registrations/res/#"])
            .await
            .unwrap(),
        vec![1]
    );
    client
        .publish(
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            format!("{{\"registrationId\":\"{registration_id}\"}}").as_bytes(),
        )
        .await
        .unwrap();
    let accepted = client
        .next_publish("$dps/registrations/res/")
        .await
        .unwrap();
    assert_eq!(
        accepted.topic,
        "$dps/registrations/res/202/?$rid=1&retry-after=1"
    );
    let body: Value = serde_json::from_slice(&accepted.payload).unwrap();
    assert_eq!(body["status"], "assigning");
    let operation = body["operationId"].as_str().unwrap().to_owned();
    client
        .publish(
            &format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId={operation}"
            ),
            b"",
        )
        .await
        .unwrap();
    let done = client
        .next_publish("$dps/registrations/res/")
        .await
        .unwrap();
    assert_eq!(done.topic, "$dps/registrations/res/200/?$rid=2");
    Ok(serde_json::from_slice(&done.payload).unwrap())
}

#[tokio::test]
async fn individual_and_group_enrollments_provision_devices() {
    let (_dir, hub) = common::start();
    let key = hub.add_individual_enrollment("single").unwrap();
    let result = provision(&hub, "single", &key).await.unwrap();
    assert_eq!(result["status"], "assigned");
    assert_eq!(
        result["registrationState"]["assignedHub"],
        hub.host.as_str()
    );
    assert_eq!(result["registrationState"]["deviceId"], "single");
    let (device, code) = TestDevice::connect(&common::options(
        &hub,
        "single",
        &key,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert_eq!(code, 0, "provisioned device connects to the hub");
    device.disconnect().await;

    let group_key = hub.add_enrollment_group("fleet").unwrap();
    let derived = sas::derive_device_key(&group_key, "member-7").unwrap();
    let result = provision(&hub, "member-7", &derived).await.unwrap();
    assert_eq!(result["registrationState"]["deviceId"], "member-7");
    assert!(hub.twin("member-7").is_ok());

    assert_eq!(
        provision(&hub, "member-8", &group_key).await.unwrap_err(),
        5,
        "group key itself is not a device key"
    );
    assert_eq!(
        provision(&hub, "nobody", &sas::random_key())
            .await
            .unwrap_err(),
        5
    );
}

#[tokio::test]
async fn x509_enrollment_provisions_a_certificate_device() {
    let (_dir, hub) = common::start();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cert-dev");
    let cert = params.self_signed(&key).unwrap();
    let [_, sha256] = testudo_hub::tls::thumbprints(cert.der());
    hub.add_x509_enrollment("cert-dev", &sha256).unwrap();
    let scope = hub.id_scope();
    let options = ConnectOptions {
        addr: hub.mqtt_addr,
        host: hub.host.clone(),
        ca_pem: hub.ca_pem.clone(),
        client_id: "cert-dev".into(),
        username: format!("{scope}/registrations/cert-dev/api-version=2019-03-31"),
        password: None,
        client_cert: Some((cert.pem(), key.serialize_pem())),
        keep_alive: 60,
    };
    let (_, code) = TestDevice::connect(&ConnectOptions {
        client_cert: None,
        ..options.clone()
    })
    .await
    .unwrap();
    assert_eq!(code, 5, "no certificate, no registration");

    let (mut client, code) = TestDevice::connect(&options).await.unwrap();
    assert_eq!(code, 0);
    client
        .subscribe(&["$dps/registrations/res/#"])
        .await
        .unwrap();
    client
        .publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b"{}")
        .await
        .unwrap();
    let accepted = client
        .next_publish("$dps/registrations/res/202/")
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&accepted.payload).unwrap();
    let operation = body["operationId"].as_str().unwrap().to_owned();
    client
        .publish(
            &format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId={operation}"
            ),
            b"",
        )
        .await
        .unwrap();
    let done = client
        .next_publish("$dps/registrations/res/200/")
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&done.payload).unwrap();
    assert_eq!(body["registrationState"]["deviceId"], "cert-dev");

    // The device now connects to the hub with the same certificate.
    let (device, code) = TestDevice::connect(&ConnectOptions {
        username: format!("{}/cert-dev/?api-version=2021-04-12", hub.host),
        ..options
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    device.disconnect().await;
}
