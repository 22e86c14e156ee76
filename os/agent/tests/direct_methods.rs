//! Promise: direct-method calls from the service reach the application as `MethodCall` events
//! and its answer (status + JSON) goes back to the caller.

#[path = "common/hub.rs"]
mod hub;

use std::time::Duration;

use serde_json::json;
use testudo_agent::AgentEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_calls_are_delivered_and_answered() {
    let hub = hub::TestHub::start();
    let config = hub.device("method-01");
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_desired(&mut events).await;

    let request = json!({"delay": 5});
    let invoke = hub
        .hub()
        .invoke_method("method-01", "reboot", &request, Duration::from_secs(10));
    let answer = async {
        let call = hub::next_event(&mut events, Duration::from_secs(10), |e| match e {
            AgentEvent::MethodCall(call) => Some(call),
            _ => None,
        })
        .await;
        assert_eq!(call.name, "reboot");
        let payload: serde_json::Value = serde_json::from_slice(&call.payload).unwrap();
        assert_eq!(payload, json!({"delay": 5}));
        agent.respond_method(&call, 202, &json!({"accepted": true}));
    };
    let (response, ()) = tokio::join!(invoke, answer);
    let response = response.unwrap();
    assert_eq!(response.status, 202);
    assert_eq!(response.payload, json!({"accepted": true}));
    agent.shutdown().await;
}
