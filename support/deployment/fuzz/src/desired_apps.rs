//! Target `desired_apps`: any desired properties (bytes parsed as JSON, as the agent's twin
//! parser hands them on) through [`testudo_deployment::twin::desired_deployments`]. Nothing
//! may panic; every entry read is within the bounds, and a token read is relayed whole.

use serde_json::{Map, Value};
use testudo_deployment::twin::{desired_deployments, MAX_DESIRED_SLOTS};
use testudo_deployment::MAX_TOKEN_BYTES;

/// The target's body.
pub fn fuzz(data: &[u8]) {
    let Ok(Value::Object(desired)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check(&desired);
}

fn check(desired: &Map<String, Value>) {
    let entries = desired_deployments(desired);
    let read = entries.iter().filter(|entry| entry.is_ok()).count();
    assert!(read <= MAX_DESIRED_SLOTS, "{read} slots read");
    for deployment in entries.into_iter().flatten() {
        assert!(deployment.token.len() <= MAX_TOKEN_BYTES);
        let entry = desired
            .get(testudo_deployment::twin::APPS)
            .and_then(|apps| apps.get(&deployment.slot))
            .and_then(|slot| slot.get(testudo_deployment::twin::DEPLOYMENT))
            .and_then(Value::as_str);
        assert_eq!(entry, Some(deployment.token.as_str()));
    }
}
