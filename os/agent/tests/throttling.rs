//! Promise: a throttling hub (CONNACK "server unavailable", twin 429) slows the agent down
//! without losing anything: it reports `Throttled`, waits, retries, and completes once the
//! hub recovers.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use serde_json::json;
use testudo_agent::AgentEvent;
use testudo_hub::Faults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_are_retried_after_the_hub_recovers() {
    let hub = hub::TestHub::start();
    let config = hub.device("throttle-01");
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_desired(&mut events).await;

    hub.hub().set_faults(Faults {
        throttle: true,
        ..Faults::default()
    });
    let report = tokio::spawn({
        let agent = agent.clone();
        async move { agent.report(&json!({"under": "throttling"})).await }
    });
    let wait = hub::next_event(&mut events, Duration::from_secs(10), |e| match e {
        AgentEvent::Throttled { retry_after } => Some(retry_after),
        _ => None,
    })
    .await;
    assert!(wait > Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !report.is_finished(),
        "a throttled patch was reported as done"
    );
    assert!(hub
        .hub()
        .reported("throttle-01")
        .unwrap()
        .get("under")
        .is_none());

    hub.hub().set_faults(Faults::default());
    tokio::time::timeout(Duration::from_secs(30), report)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        hub.hub().reported("throttle-01").unwrap()["under"],
        "throttling"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connects_back_off_and_recover() {
    let hub = hub::TestHub::start();
    hub.hub().set_faults(Faults {
        throttle: true,
        ..Faults::default()
    });
    let config = hub.device("throttle-02");
    let (agent, mut events) = testudo_agent::spawn(config);
    let reason = hub::next_event(&mut events, Duration::from_secs(10), |e| match e {
        AgentEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("server unavailable"), "{reason}");
    assert!(!hub.hub().is_connected("throttle-02"));
    hub.hub().set_faults(Faults::default());
    hub::next_event(&mut events, Duration::from_secs(20), |e| match e {
        AgentEvent::Connected { .. } => Some(()),
        _ => None,
    })
    .await;
    hub::next_desired(&mut events).await;
    agent.shutdown().await;
}
