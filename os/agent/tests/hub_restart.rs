//! Promise: the agent survives the hub going away mid-session (emulator stopped and started
//! again on the same port with its persisted state): it reconnects, re-syncs the twin and
//! delivers what it queued meanwhile.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use serde_json::json;
use testudo_agent::AgentEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_resyncs_after_the_hub_restarts() {
    let mut hub = hub::TestHub::start();
    let config = hub.device("restart-01");
    let before = hub
        .hub()
        .set_desired("restart-01", &json!({"mode": "a"}))
        .unwrap();
    let (agent, mut events) = testudo_agent::spawn(config);
    assert_eq!(hub::next_desired(&mut events).await.version, before);
    agent.report(&json!({"phase": "before"})).await.unwrap();

    hub.stop();
    hub::next_event(&mut events, Duration::from_secs(10), |e| match e {
        AgentEvent::Disconnected { .. } => Some(()),
        _ => None,
    })
    .await;
    let queued = tokio::spawn({
        let agent = agent.clone();
        async move { agent.report(&json!({"phase": "during"})).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    hub.start_again();

    hub::next_event(&mut events, Duration::from_secs(20), |e| match e {
        AgentEvent::Connected { connection } if connection >= 2 => Some(()),
        _ => None,
    })
    .await;
    queued.await.unwrap().unwrap();
    assert_eq!(hub.hub().reported("restart-01").unwrap()["phase"], "during");

    let after = hub
        .hub()
        .set_desired("restart-01", &json!({"mode": "b"}))
        .unwrap();
    assert!(after > before, "the hub kept its state across the restart");
    let change = hub::next_desired(&mut events).await;
    assert_eq!(
        (change.version, change.desired["mode"].as_str()),
        (after, Some("b"))
    );
    agent.shutdown().await;
}
