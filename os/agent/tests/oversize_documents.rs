//! Promise: reported patches over IoT Hub's limits (32 KB, depth 10) are refused with a clear
//! error before they are sent, and the agent keeps working afterwards.

#[path = "common/hub.rs"]
mod hub;

use serde_json::json;
use testudo_agent::twin::TwinDocumentError;
use testudo_agent::AgentError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_too_deep_reported_patches_are_refused() {
    let hub = hub::TestHub::start();
    let config = hub.device("big-01");
    let (agent, mut events) = testudo_agent::spawn(config);
    hub::next_desired(&mut events).await;

    let big = "x".repeat(33 * 1024);
    let err = agent.report(&json!({ "blob": big })).await.unwrap_err();
    assert!(
        matches!(
            &err,
            AgentError::ValidateReported {
                source: TwinDocumentError::TooLarge { limit: 32768, .. }
            }
        ),
        "{err}"
    );

    let mut deep = json!(1);
    for _ in 0..11 {
        deep = json!({ "d": deep });
    }
    let err = agent.report(&deep).await.unwrap_err();
    assert!(
        matches!(
            &err,
            AgentError::ValidateReported {
                source: TwinDocumentError::TooDeep { depth: 11, .. }
            }
        ),
        "{err}"
    );

    // Still connected and working.
    agent.report(&json!({"small": true})).await.unwrap();
    assert_eq!(hub.hub().reported("big-01").unwrap()["small"], true);
    assert!(hub.hub().reported("big-01").unwrap().get("blob").is_none());
    agent.shutdown().await;
}
