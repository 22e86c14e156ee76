//! Promise: with short-lived SAS tokens the agent renews before expiry by draining and
//! reconnecting, and no reported patch or telemetry message is lost across renewals — also
//! when its first token is made just before a second ends: a token's expiry (`se`) is whole
//! seconds, so that token expires barely more than half its nominal lifetime later, and the
//! renewal must be timed from that expiry (the hub ends the connection at it).

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use serde_json::json;
use testudo_agent::{AgentEvent, Authentication};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_without_losing_messages() {
    let hub = hub::TestHub::start();
    let mut config = hub.device("renew-01");
    let Authentication::Sas { token_ttl, .. } = &mut config.auth else {
        panic!("SAS device")
    };
    *token_ttl = Duration::from_secs(3);
    // Start at the end of a second: the first token's `se` is then ~2.0 s away, not 3 s; a
    // renewal timed from the nominal lifetime (2.4 s) would come after the hub ended it.
    let into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(Duration::from_millis(
        u64::from(1_990 - into_second) % 1_000,
    ))
    .await;
    let (agent, mut events) = testudo_agent::spawn(config);

    // Keep sending for ~6 s, i.e. across several renewals (at least two even on a slow machine).
    let sender = agent.clone();
    let mut traffic = tokio::spawn(async move {
        let mut sent = 0u32;
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            sender
                .send_telemetry(format!("{{\"n\":{sent}}}").into_bytes(), &[])
                .await
                .unwrap();
            sender.report(&json!({ "counter": sent })).await.unwrap();
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sent
    });
    let mut renewals = 0;
    let mut connections = 0;
    let sent = loop {
        tokio::select! {
            event = events.recv() => match event.unwrap() {
                AgentEvent::RenewingToken => renewals += 1,
                AgentEvent::Connected { connection } => connections = connection,
                AgentEvent::Error(err) => panic!("unexpected error: {err}"),
                // Renewal is a clean reconnect; a lost connection would mean the hub cut an
                // expired token.
                AgentEvent::Disconnected { reason, .. } => panic!("connection lost: {reason}"),
                _ => {}
            },
            sent = &mut traffic => break sent.unwrap(),
        }
    };
    // Drain what arrived while the traffic task finished.
    while let Ok(event) = events.try_recv() {
        if let AgentEvent::RenewingToken = event {
            renewals += 1;
        }
        if let AgentEvent::Connected { connection } = event {
            connections = connection;
        }
    }
    assert!(renewals >= 2, "only {renewals} renewals");
    assert!(connections >= 3, "only {connections} connections");
    // Every acknowledged message is in the hub (at-least-once: duplicates allowed, losses not).
    let captured = hub.hub().telemetry(Some("renew-01"));
    let mut seen: Vec<u64> = captured
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(m.body.as_deref()?).ok())
        .filter_map(|v| v["n"].as_u64())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (0..u64::from(sent)).collect::<Vec<_>>());
    assert_eq!(hub.hub().reported("renew-01").unwrap()["counter"], sent - 1);
    agent.shutdown().await;
}
