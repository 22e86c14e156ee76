//! Promise: hostile or broken MQTT input closes only the offending connection; the hub
//! keeps serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use testudo_hub::test_client::TestDevice;

#[tokio::test]
async fn garbage_closes_the_connection_and_the_hub_keeps_serving() {
    let (_dir, hub) = common::start();
    let mut bystander = common::connected_device(&hub, "bystander").await;
    let garbage: [&[u8]; 5] = [
        &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], // malformed remaining length
        &[0x36, 0x03, 0x00, 0x01, b'a'],       // QoS 3 publish
        &[0x30, 0x04, 0x00, 0x02, 0xff, 0xfe], // invalid UTF-8 topic
        &[0x10, 0x02, 0x00, 0x09],             // truncated second CONNECT
        &[0xf0, 0x00],                         // reserved packet type
    ];
    for (index, bytes) in garbage.into_iter().enumerate() {
        let mut victim = common::connected_device(&hub, &format!("victim{index}")).await;
        victim.send_raw(bytes).await.unwrap();
        assert!(
            victim.closed_within(Duration::from_secs(5)).await,
            "connection must be closed after {bytes:02x?}"
        );
    }
    // A connection whose first packet is not CONNECT never gets a CONNACK.
    let key = hub.add_device("raw").unwrap().primary_key;
    let mut options = common::options(&hub, "raw", &key, Duration::from_secs(60));
    options.client_id = String::new();
    let (_, code) = TestDevice::connect(&options).await.unwrap();
    assert_eq!(code, 4, "empty client id is refused");

    bystander
        .publish("$iothub/twin/GET/?$rid=1", b"")
        .await
        .unwrap();
    let response = bystander.next_publish("$iothub/twin/res/").await.unwrap();
    assert_eq!(response.topic, "$iothub/twin/res/200/?$rid=1");
}
