//! Promise: when the hub drops the connection, the agent reconnects on its own (backoff with
//! jitter), re-reads the full twin so desired changes made while it was away are not missed,
//! and delivers the reported patches it queued while offline.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use serde_json::json;
use testudo_agent::{AgentEvent, ChangeKind};
use testudo_hub::Faults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_offline_arrive_after_reconnect() {
    let hub = hub::TestHub::start();
    let config = hub.device("drop-01");
    let (agent, mut events) = testudo_agent::spawn(config);
    let first = hub::next_desired(&mut events).await;

    // Cut the device off and keep it off.
    hub.hub().set_faults(Faults {
        refuse_connections: true,
        ..Faults::default()
    });
    hub.hub().drop_connections(Some("drop-01"));
    hub::next_event(&mut events, Duration::from_secs(10), |e| match e {
        AgentEvent::Disconnected { .. } => Some(()),
        _ => None,
    })
    .await;

    // While it is offline: the service changes desired twice (the hub does not queue these for
    // the device), and the application reports twice (queued in the agent).
    hub.hub().set_desired("drop-01", &json!({"a": 1})).unwrap();
    let latest = hub.hub().set_desired("drop-01", &json!({"b": 2})).unwrap();
    let r1 = tokio::spawn(agent.queue_report(&json!({"offline": 1})).unwrap());
    let r2 = tokio::spawn(
        agent
            .queue_report(&json!({"offline": 2, "other": true}))
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !r1.is_finished() && !r2.is_finished(),
        "reports completed while offline"
    );

    hub.hub().set_faults(Faults::default());
    let change = hub::next_desired(&mut events).await;
    assert_eq!(change.kind, ChangeKind::Full);
    assert_eq!(change.version, latest);
    assert!(change.version > first.version);
    assert_eq!(change.desired["a"], 1);
    assert_eq!(change.desired["b"], 2);

    r1.await.unwrap().unwrap();
    r2.await.unwrap().unwrap();
    let reported = hub.hub().reported("drop-01").unwrap();
    assert_eq!(reported["offline"], 2, "queued patches applied in order");
    assert_eq!(reported["other"], true);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_drops_do_not_lose_desired_versions() {
    let hub = hub::TestHub::start();
    let config = hub.device("drop-02");
    let (agent, mut events) = testudo_agent::spawn(config);
    let mut last = hub::next_desired(&mut events).await.version;
    for round in 0..5 {
        let version = hub
            .hub()
            .set_desired("drop-02", &json!({ "round": round }))
            .unwrap();
        hub.hub().drop_connections(Some("drop-02"));
        // Whatever path it takes (patch before the drop, or full twin after), the agent ends at
        // `version` with strictly increasing versions on the way.
        loop {
            let change = hub::next_desired(&mut events).await;
            assert!(
                change.version > last,
                "version went from {last} to {}",
                change.version
            );
            last = change.version;
            if change.version == version {
                assert_eq!(change.desired["round"], round);
                break;
            }
        }
    }
    agent.shutdown().await;
}
