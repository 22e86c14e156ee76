//! Promise: the HTTPS service API authenticates with the service SAS policy and implements
//! registry CRUD and twin get/patch with etag preconditions, as `azure-iot-hub` expects.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use serde_json::json;
use testudo_hub::control::ServiceClient;
use testudo_hub::HubError;

#[test]
fn registry_and_twins_over_https() {
    let (dir, hub) = common::start();
    let client = ServiceClient::for_running(dir.path())
        .unwrap()
        .expect("emulator is running");

    let (_, identity) = client
        .request("PUT", "/devices/svc1", Some(&json!({"deviceId": "svc1"})))
        .unwrap();
    assert_eq!(identity["authentication"]["type"], "sas");
    assert!(identity["authentication"]["symmetricKey"]["primaryKey"].is_string());
    let duplicate = client.request("PUT", "/devices/svc1", Some(&json!({"deviceId": "svc1"})));
    assert!(
        matches!(duplicate, Err(HubError::ServiceStatus { status: 409, .. })),
        "{duplicate:?}"
    );
    let etag = identity["etag"].as_str().unwrap();
    let (_, disabled) = client
        .request_if_match(
            "PUT",
            "/devices/svc1",
            Some(&json!({"deviceId": "svc1", "status": "disabled"})),
            Some(etag),
        )
        .unwrap();
    assert_eq!(disabled["status"], "disabled");
    let stale = client.request_if_match(
        "PUT",
        "/devices/svc1",
        Some(&json!({"deviceId": "svc1"})),
        Some(etag),
    );
    assert!(
        matches!(stale, Err(HubError::ServiceStatus { status: 412, .. })),
        "{stale:?}"
    );

    let (_, twin) = client.request("GET", "/twins/svc1", None).unwrap();
    assert_eq!(twin["deviceId"], "svc1");
    assert_eq!(twin["properties"]["desired"]["$version"], 1);
    let (_, patched) = client
        .request(
            "PATCH",
            "/twins/svc1",
            Some(&json!({"properties": {"desired": {"a": 1}}, "tags": {"site": "x"}})),
        )
        .unwrap();
    assert_eq!(patched["properties"]["desired"]["a"], 1);
    assert_eq!(patched["tags"]["site"], "x");
    assert_ne!(patched["etag"], twin["etag"]);
    assert_eq!(hub.twin("svc1").unwrap()["properties"]["desired"]["a"], 1);

    let missing = client.request("GET", "/twins/nope", None);
    assert!(matches!(
        missing,
        Err(HubError::ServiceStatus { status: 404, .. })
    ));
    let (_, list) = client.request("GET", "/devices", None).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    client.request("DELETE", "/devices/svc1", None).unwrap();
    assert!(hub.twin("svc1").is_err());
}

#[test]
fn etags_and_authorization_are_enforced() {
    let (_dir, hub) = common::start();
    hub.add_device("d").unwrap();
    let etag = hub.twin("d").unwrap()["etag"].as_str().unwrap().to_owned();
    hub.set_desired("d", &json!({"x": 1})).unwrap();
    let stale = hub.hub().update_twin(
        "d",
        &json!({"properties": {"desired": {"x": 2}}}),
        Some(&format!("\"{etag}\"")),
        false,
    );
    assert!(matches!(
        stale,
        Err(HubError::Twin {
            source: testudo_hub::TwinError::EtagMismatch,
            ..
        })
    ));
    let current = hub.twin("d").unwrap()["etag"].as_str().unwrap().to_owned();
    hub.hub()
        .update_twin(
            "d",
            &json!({"properties": {"desired": {"x": 2}}}),
            Some(&format!("\"{current}\"")),
            false,
        )
        .unwrap();

    let (name, key) = hub.service_key();
    let resource = format!("{}:{}", hub.host, hub.https_addr.port());
    let good = testudo_hub::sas::generate(
        &resource,
        &key,
        Some(&name),
        testudo_hub::clock::unix_now() + 60,
    )
    .unwrap();
    assert!(hub.hub().authenticate_service(&good));
    let expired = testudo_hub::sas::generate(
        &resource,
        &key,
        Some(&name),
        testudo_hub::clock::unix_now() - 1,
    )
    .unwrap();
    assert!(!hub.hub().authenticate_service(&expired));
    let wrong_policy = testudo_hub::sas::generate(
        &resource,
        &key,
        Some("device"),
        testudo_hub::clock::unix_now() + 60,
    )
    .unwrap();
    assert!(!hub.hub().authenticate_service(&wrong_policy));
    let wrong_key = testudo_hub::sas::generate(
        &resource,
        &testudo_hub::sas::random_key(),
        Some(&name),
        testudo_hub::clock::unix_now() + 60,
    )
    .unwrap();
    assert!(!hub.hub().authenticate_service(&wrong_key));
}

#[test]
fn wrong_service_key_is_refused_with_401() {
    let (dir, hub) = common::start();
    hub.add_device("d").unwrap();
    // A client holding another key: rewrite the key the CLI-side client reads.
    let path = dir.path().join("hub.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["serviceKey"] = json!(testudo_hub::sas::random_key());
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let client = ServiceClient::for_running(dir.path()).unwrap().unwrap();
    let refused = client.request("GET", "/twins/d", None);
    assert!(
        matches!(refused, Err(HubError::ServiceStatus { status: 401, .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn admin_endpoints_set_faults_and_read_telemetry() {
    let (dir, hub) = common::start();
    let mut device = common::connected_device(&hub, "adm").await;
    device
        .publish("devices/adm/messages/events/", b"42")
        .await
        .unwrap();
    let state = dir.path().to_path_buf();
    let (faults, telemetry) = tokio::task::spawn_blocking(move || {
        let client = ServiceClient::for_running(&state).unwrap().unwrap();
        let (_, faults) = client
            .request(
                "POST",
                "/testudo/faults",
                Some(&json!({"throttle": true, "delayMs": 5, "dropConnections": "adm"})),
            )
            .unwrap();
        let (_, telemetry) = client
            .request("GET", "/testudo/telemetry?deviceId=adm", None)
            .unwrap();
        (faults, telemetry)
    })
    .await
    .unwrap();
    assert_eq!(
        faults,
        json!({"throttle": true, "delayMs": 5, "refuseConnections": false})
    );
    assert!(hub.hub().faults().throttle);
    assert!(
        device
            .closed_within(std::time::Duration::from_secs(5))
            .await
    );
    assert_eq!(telemetry[0]["body"], "42");
    assert_eq!(telemetry[0]["deviceId"], "adm");
}
