//! Promise: while offline, reported patches and telemetry wait in a bounded queue; when it is
//! full new items are refused at once with `QueueFull` (nothing already queued is dropped), and
//! everything accepted is delivered in order after reconnecting.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use serde_json::json;
use testudo_agent::{AgentError, AgentEvent};
use testudo_hub::Faults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_new_items_and_keeps_the_rest() {
    let hub = hub::TestHub::start();
    let mut config = hub.device("queue-01");
    config.reported_capacity = 3;
    config.telemetry_capacity = 2;
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_desired(&mut events).await;

    hub.hub().set_faults(Faults {
        refuse_connections: true,
        ..Faults::default()
    });
    hub.hub().drop_connections(Some("queue-01"));
    hub::next_event(&mut events, Duration::from_secs(10), |e| match e {
        AgentEvent::Disconnected { .. } => Some(()),
        _ => None,
    })
    .await;

    // Queued in this order; sent in this order.
    let pending: Vec<_> = (0..3)
        .map(|n| agent.queue_report(&json!({ "n": n })).unwrap())
        .collect();
    let telemetry: Vec<_> = (0..2)
        .map(|n| agent.queue_telemetry(format!("{n}").into_bytes(), &[]))
        .collect();
    let err = agent.report(&json!({ "n": 99 })).await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::QueueFull {
                kind: "reported",
                capacity: 3
            }
        ),
        "{err}"
    );
    let err = agent.send_telemetry(b"x".to_vec(), &[]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::QueueFull {
                kind: "telemetry",
                capacity: 2
            }
        ),
        "{err}"
    );

    hub.hub().set_faults(Faults::default());
    for ack in pending {
        let version = tokio::time::timeout(Duration::from_secs(20), ack)
            .await
            .unwrap()
            .unwrap();
        assert!(version.is_some());
    }
    for ack in telemetry {
        tokio::time::timeout(Duration::from_secs(20), ack)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        hub.hub().reported("queue-01").unwrap()["n"],
        2,
        "applied in order, last wins"
    );
    let bodies: Vec<String> = hub
        .hub()
        .telemetry(Some("queue-01"))
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    assert_eq!(bodies, ["0", "1"]);
    agent.shutdown().await;
}
