//! Promise: the device twin protocol behaves as IoT Hub's — full GET, reported patches
//! answered 204 with the new `$version`, desired patches pushed with `$version`, bad
//! documents answered with an error status while the connection stays usable, and direct
//! methods and telemetry routed both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use serde_json::{json, Value};

fn body(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).unwrap()
}

#[tokio::test]
async fn twin_get_reported_and_desired_round_trip() {
    let (_dir, hub) = common::start();
    let mut device = common::connected_device(&hub, "dev1").await;

    device
        .publish("$iothub/twin/GET/?$rid=1", b"")
        .await
        .unwrap();
    let response = device.next_publish("$iothub/twin/res/").await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/200/?$rid=1");
    assert_eq!(
        body(&response.payload),
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
    );

    device
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=2",
            br#"{"fw":"1.0","net":{"ip":"10.0.0.2"}}"#,
        )
        .await
        .unwrap();
    let response = device.next_publish("$iothub/twin/res/").await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/204/?$rid=2&$version=2");
    assert_eq!(hub.reported("dev1").unwrap()["net"]["ip"], "10.0.0.2");
    let twin = hub.twin("dev1").unwrap();
    assert!(twin["properties"]["reported"]["$metadata"]["fw"]["$lastUpdated"].is_string());

    let version = hub
        .set_desired("dev1", &json!({"interval": 5, "mode": null}))
        .unwrap();
    assert_eq!(version, 2);
    let patch = device
        .next_publish("$iothub/twin/PATCH/properties/desired/")
        .await
        .unwrap();
    assert_eq!(
        patch.topic,
        "$iothub/twin/PATCH/properties/desired/?$version=2"
    );
    assert_eq!(
        body(&patch.payload),
        json!({"interval": 5, "mode": null, "$version": 2})
    );
}

#[tokio::test]
async fn bad_reported_documents_get_error_statuses_and_the_session_survives() {
    let (_dir, hub) = common::start();
    let mut device = common::connected_device(&hub, "dev1").await;
    let mut deep = json!(1);
    for _ in 0..11 {
        deep = json!({ "n": deep });
    }
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"{not json".to_vec(), 400),
        (b"[1,2]".to_vec(), 400),
        (deep.to_string().into_bytes(), 400),
        (
            json!({"big": "x".repeat(33 * 1024)})
                .to_string()
                .into_bytes(),
            413,
        ),
        (br#"{"a.b": 1}"#.to_vec(), 400),
    ];
    for (rid, (payload, status)) in cases.into_iter().enumerate() {
        device
            .publish(
                &format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}"),
                &payload,
            )
            .await
            .unwrap();
        let response = device.next_publish("$iothub/twin/res/").await.unwrap();
        assert_eq!(
            response.topic,
            format!("$iothub/twin/res/{status}/?$rid={rid}")
        );
    }
    assert_eq!(
        hub.reported("dev1").unwrap(),
        json!({"$version": 1}),
        "nothing applied"
    );
    // Desired documents obey the same limits through the Rust/service API.
    assert!(hub
        .set_desired("dev1", &json!({"big": "x".repeat(33 * 1024)}))
        .is_err());
    device
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=ok",
            br#"{"fine":true}"#,
        )
        .await
        .unwrap();
    let response = device.next_publish("$iothub/twin/res/").await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/204/?$rid=ok&$version=2");
}

#[tokio::test]
async fn direct_methods_and_telemetry_are_routed() {
    let (_dir, hub) = common::start();
    let mut device = common::connected_device(&hub, "dev1").await;
    let args = json!({"delay": 3});
    let invoke = hub.invoke_method("dev1", "reboot", &args, Duration::from_secs(10));
    let answer = async {
        let request = device.next_publish("$iothub/methods/POST/").await.unwrap();
        let (path, rid) = request.topic.split_once("?$rid=").unwrap();
        assert_eq!(path, "$iothub/methods/POST/reboot/");
        assert_eq!(body(&request.payload), json!({"delay": 3}));
        device
            .publish(
                &format!("$iothub/methods/res/202/?$rid={rid}"),
                br#"{"ok":true}"#,
            )
            .await
            .unwrap();
    };
    let (response, ()) = tokio::join!(invoke, answer);
    let response = response.unwrap();
    assert_eq!(
        (response.status, response.payload),
        (202, json!({"ok": true}))
    );

    assert!(matches!(
        hub.invoke_method("ghost", "x", &Value::Null, Duration::from_secs(1))
            .await,
        Err(testudo_hub::HubError::DeviceNotFound { .. })
    ));

    device
        .publish(
            "devices/dev1/messages/events/%24.ct=application%2Fjson&kind=t",
            b"{\"t\":1}",
        )
        .await
        .unwrap();
    let messages = hub.telemetry(Some("dev1"));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].properties["$.ct"], "application/json");
    assert_eq!(messages[0].properties["kind"], "t");
    assert_eq!(messages[0].body.as_deref(), Some("{\"t\":1}"));

    // Publishing to another device's topic is not allowed: the hub closes the connection.
    device
        .send_raw(&{
            let mut bytes = Vec::new();
            testudo_hub::mqtt::encode(
                &testudo_hub::mqtt::Packet::Publish(testudo_hub::mqtt::Publish {
                    topic: "devices/other/messages/events/".into(),
                    payload: vec![],
                    qos: 0,
                    retain: false,
                    dup: false,
                    pkid: 0,
                }),
                &mut bytes,
            );
            bytes
        })
        .await
        .unwrap();
    assert!(device.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn methods_need_a_subscription_like_on_iot_hub() {
    let (_dir, hub) = common::start();
    let key = hub.add_device("quiet").unwrap().primary_key;
    let (mut device, code) = testudo_hub::test_client::TestDevice::connect(&common::options(
        &hub,
        "quiet",
        &key,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert_eq!(code, 0);
    let started = std::time::Instant::now();
    let offline = hub
        .invoke_method("quiet", "m", &Value::Null, Duration::from_secs(10))
        .await;
    assert!(
        matches!(offline, Err(testudo_hub::HubError::DeviceNotOnline { .. })),
        "{offline:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
    device.subscribe(&["$iothub/methods/POST/#"]).await.unwrap();
    assert!(common::eventually(|| hub.hub().is_connected("quiet")).await);
    let invoke = hub.invoke_method("quiet", "m", &Value::Null, Duration::from_secs(10));
    let answer = async {
        let request = device
            .next_publish("$iothub/methods/POST/m/")
            .await
            .unwrap();
        let rid = request.topic.split("?$rid=").nth(1).unwrap().to_owned();
        device
            .publish(&format!("$iothub/methods/res/200/?$rid={rid}"), b"")
            .await
            .unwrap();
    };
    let (response, ()) = tokio::join!(invoke, answer);
    assert_eq!(response.unwrap().status, 200);
}
