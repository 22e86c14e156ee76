//! Promise: malformed or oversize twin JSON from the hub (full document or desired patch) is
//! reported as an error event, the agent keeps running, recovers with a fresh GET, and never
//! delivers a version out of order (a gap left by a dropped patch triggers a re-GET).

#[path = "common/peer.rs"]
mod peer;

use std::time::Duration;

use serde_json::json;
use testudo_agent::backoff::Backoff;
use testudo_agent::twin::TwinDocumentError;
use testudo_agent::{
    AgentConfig, AgentError, AgentEvent, Authentication, ChangeKind, SoftwareKey, TlsSettings,
};
use tokio::sync::mpsc::UnboundedReceiver;

async fn next(events: &mut UnboundedReceiver<AgentEvent>) -> AgentEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("no agent event within 10 s")
            .expect("agent event stream ended");
        match event {
            AgentEvent::Connected { .. } | AgentEvent::FullTwin { .. } => continue,
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_twin_json_is_an_error_not_a_crash() {
    let listener = peer::listen().await;
    let auth = Authentication::Sas {
        signer: std::sync::Arc::new(SoftwareKey::from_bytes(vec![9; 32])),
        token_ttl: Duration::from_secs(3600),
    };
    let tls = TlsSettings {
        ca_pem: listener.ca_pem.clone().into_bytes(),
        client_identity: None,
    };
    let mut config = AgentConfig::new("localhost", "bad-twin-01", tls, auth);
    config.port = listener.port;
    config.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let (agent, mut events) = testudo_agent::spawn(config);
    let mut hub = listener.accept().await;

    // 1. The full twin is not JSON: error event, then the agent asks again.
    let rid = hub.expect_get().await;
    hub.publish(
        &format!("$iothub/twin/res/200/?$rid={rid}"),
        b"{\"desired\": {\"$version\": 3,",
    )
    .await;
    match next(&mut events).await {
        AgentEvent::Error(AgentError::ParseTwin {
            source: TwinDocumentError::NotJson { .. },
            ..
        }) => {}
        other => panic!("expected a parse error, got {other:?}"),
    }
    let rid = hub.expect_get().await;
    hub.publish(
        &format!("$iothub/twin/res/200/?$rid={rid}"),
        br#"{"desired":{"a":1,"$version":5},"reported":{"$version":1}}"#,
    )
    .await;
    match next(&mut events).await {
        AgentEvent::Desired(change) => {
            assert_eq!((change.version, change.kind), (5, ChangeKind::Full))
        }
        other => panic!("expected the full twin, got {other:?}"),
    }

    // 2. Patch 6 is garbage, patch 7 is fine: an error, then a gap -> re-GET, never 7 before 6.
    hub.publish(
        "$iothub/twin/PATCH/properties/desired/?$version=6",
        b"[1, 2",
    )
    .await;
    match next(&mut events).await {
        AgentEvent::Error(AgentError::ParseTwin { .. }) => {}
        other => panic!("expected a parse error, got {other:?}"),
    }
    hub.publish(
        "$iothub/twin/PATCH/properties/desired/?$version=7",
        br#"{"c":3,"$version":7}"#,
    )
    .await;
    let rid = hub.expect_get().await;
    hub.publish(
        &format!("$iothub/twin/res/200/?$rid={rid}"),
        br#"{"desired":{"a":1,"b":2,"c":3,"$version":7},"reported":{"$version":1}}"#,
    )
    .await;
    match next(&mut events).await {
        AgentEvent::Desired(change) => {
            assert_eq!((change.version, change.kind), (7, ChangeKind::Full));
            assert_eq!(change.desired["b"], 2);
        }
        other => panic!("expected the re-read twin, got {other:?}"),
    }

    // 3. Wrongly typed metadata and hostile nesting are errors too.
    hub.publish(
        "$iothub/twin/PATCH/properties/desired/?$version=8",
        br#"{"$version":"8"}"#,
    )
    .await;
    assert!(matches!(
        next(&mut events).await,
        AgentEvent::Error(AgentError::ParseTwin { .. })
    ));
    let hostile = "[".repeat(50_000);
    hub.publish(
        "$iothub/twin/PATCH/properties/desired/?$version=8",
        hostile.as_bytes(),
    )
    .await;
    assert!(matches!(
        next(&mut events).await,
        AgentEvent::Error(AgentError::ParseTwin { .. })
    ));
    // Oversize: a desired patch far beyond IoT Hub's 32 KB limit is refused, not applied.
    let oversize = format!("{{\"blob\":\"{}\",\"$version\":8}}", "x".repeat(40 * 1024));
    hub.publish(
        "$iothub/twin/PATCH/properties/desired/?$version=8",
        oversize.as_bytes(),
    )
    .await;
    match next(&mut events).await {
        AgentEvent::Error(AgentError::ParseTwin {
            source: TwinDocumentError::TooLarge { .. },
            ..
        }) => {}
        other => panic!("expected a size error, got {other:?}"),
    }

    // 4. Still alive: a valid patch applies and reported patches still work.
    hub.publish(
        "$iothub/twin/PATCH/properties/desired/?$version=8",
        br#"{"a":null,"$version":8}"#,
    )
    .await;
    match next(&mut events).await {
        AgentEvent::Desired(change) => {
            assert_eq!((change.version, change.kind), (8, ChangeKind::Patch));
            assert!(change.desired.get("a").is_none());
        }
        other => panic!("expected patch 8, got {other:?}"),
    }
    let report = tokio::spawn({
        let agent = agent.clone();
        async move { agent.report(&json!({"alive": true})).await }
    });
    let publish = hub.next_publish().await;
    let rid = publish
        .topic
        .strip_prefix("$iothub/twin/PATCH/properties/reported/?$rid=")
        .unwrap()
        .to_string();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&publish.payload).unwrap(),
        json!({"alive": true})
    );
    hub.publish(&format!("$iothub/twin/res/204/?$rid={rid}&$version=2"), b"")
        .await;
    assert_eq!(report.await.unwrap().unwrap(), Some(2));
}
