//! Where deployments travel in the device twin, and how the device reports them: the twin's
//! half of the device contract for app slots (`docs/plan-format.md`).
//!
//! Desired properties (set by `testudo deploy`, relayed by the agent, verified by init):
//!
//! ```json
//! { "apps": { "<slot>": { "deployment": "<compact JWS>" } } }
//! ```
//!
//! Reported properties, in the manner of IoT Edge's `$edgeAgent` (each slot's
//! `runtimeStatus`, `restartCount`, `exitCode`; the last desired `$version` handled and how it
//! went). Slot names are plan names (lower case), so they never collide with the camelCase
//! keys beside them:
//!
//! ```json
//! { "apps": { "<slot>": SlotReport, "lastDesiredVersion": 7,
//!             "lastDesiredStatus": { "code": 200, "description": "..." } } }
//! ```
//!
//! Deleting a slot's desired entry changes nothing on the device: only a signed removal
//! empties a slot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::MAX_TOKEN_BYTES;

/// The desired and reported property that holds the app slots.
pub const APPS: &str = "apps";
/// A slot's desired field that holds its deployment token.
pub const DEPLOYMENT: &str = "deployment";
/// Most slots read from the desired properties; further entries are refused, not read.
pub const MAX_DESIRED_SLOTS: usize = 16;

/// Why a slot's desired entry is not a token to relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredEntryError {
    /// The entry is not `{"deployment": "<token>"}`.
    #[error("desired apps.{slot} is not an object with a `deployment` string")]
    Shape {
        /// The slot's key in the twin.
        slot: String,
    },
    /// The token is longer than a token may be; it was not read.
    #[error("desired apps.{slot}.deployment is {found} bytes, more than {MAX_TOKEN_BYTES}")]
    TooLong {
        /// The slot's key in the twin.
        slot: String,
        /// Its length.
        found: usize,
    },
    /// More slots than [`MAX_DESIRED_SLOTS`]; the rest were not read.
    #[error("desired apps has more than {MAX_DESIRED_SLOTS} slots; apps.{slot} was not read")]
    TooManySlots {
        /// The first slot not read.
        slot: String,
    },
}

/// One slot's desired deployment, as the twin carries it: its key and its token, neither
/// verified (init checks the token, and that its document names this slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDeployment {
    /// The slot's key under `apps`.
    pub slot: String,
    /// The compact JWS.
    pub token: String,
}

/// The deployments in a device's complete desired properties, by slot name (sorted), each
/// entry checked on its own so one bad entry does not hide the others. No `apps`, or an
/// `apps` that is not an object, is no deployment at all (the twin may carry other things).
pub fn desired_deployments(
    desired: &Map<String, Value>,
) -> Vec<Result<DesiredDeployment, DesiredEntryError>> {
    let Some(Value::Object(apps)) = desired.get(APPS) else {
        return Vec::new();
    };
    let sorted: BTreeMap<&String, &Value> = apps.iter().collect();
    sorted
        .into_iter()
        .enumerate()
        .map(|(index, (slot, entry))| {
            if index >= MAX_DESIRED_SLOTS {
                return Err(DesiredEntryError::TooManySlots { slot: slot.clone() });
            }
            let token = entry
                .get(DEPLOYMENT)
                .and_then(Value::as_str)
                .ok_or_else(|| DesiredEntryError::Shape { slot: slot.clone() })?;
            if token.len() > MAX_TOKEN_BYTES {
                return Err(DesiredEntryError::TooLong {
                    slot: slot.clone(),
                    found: token.len(),
                });
            }
            Ok(DesiredDeployment {
                slot: slot.clone(),
                token: token.to_owned(),
            })
        })
        .collect()
}

/// The desired-properties patch that sets `slot`'s deployment to `token`.
pub fn desired_patch(slot: &str, token: &str) -> Value {
    serde_json::json!({ APPS: { slot: { DEPLOYMENT: token } } })
}

/// The serial the next document for `slot` should carry: one more than the greatest the twin
/// shows, whether desired (a token that verifies with one of `trusted`; others are ignored)
/// or reported (`apps.<slot>.serial`); 1 for a slot the twin says nothing of.
pub fn next_serial(
    desired: &Map<String, Value>,
    reported: &Map<String, Value>,
    slot: &str,
    trusted: &[ed25519_dalek::VerifyingKey],
) -> u64 {
    let desired_serial = desired_deployments(desired)
        .into_iter()
        .flatten()
        .filter(|entry| entry.slot == slot)
        .filter_map(|entry| crate::verify(&entry.token, trusted).ok())
        .map(|verified| verified.deployment().serial)
        .max();
    let reported_serial = reported
        .get(APPS)
        .and_then(|apps| apps.get(slot))
        .and_then(|report| report.get("serial"))
        .and_then(Value::as_u64);
    desired_serial
        .max(reported_serial)
        .map_or(1, |serial| serial.saturating_add(1))
}

/// What runs in a slot, in `$edgeAgent`'s words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RuntimeStatus {
    /// The app runs.
    Running,
    /// Nothing runs (an empty slot, or the app stopped).
    Stopped,
    /// The app failed and is not restarted.
    Failed,
    /// The app failed and waits to be restarted.
    Backoff,
}

/// How the last desired deployment went, with `$edgeAgent`'s codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredStatus {
    /// 200 applied; 400 a document refused (signature, key, system, serial, routes, hash);
    /// 500 applying failed (the app did not start or stay healthy: rolled back).
    pub code: u16,
    /// Why, in one line.
    pub description: String,
}

/// One slot as the device reports it. Absent values are written as `null`, so a report
/// patched over an earlier one (reported properties merge) removes what no longer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotReport {
    /// The app's name (this and the next three are absent while the slot holds its factory
    /// app or has never been deployed to).
    #[serde(default)]
    pub app: Option<String>,
    /// The app's version.
    #[serde(default)]
    pub version: Option<String>,
    /// sha256 of its module.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The serial of the deployment (or removal) last applied.
    #[serde(default)]
    pub serial: Option<u64>,
    /// Whether it runs.
    pub runtime_status: RuntimeStatus,
    /// Restarts since it was deployed.
    pub restart_count: u32,
    /// Its last exit code, when it has exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// How the last deployment to this slot went.
    #[serde(default)]
    pub last_result: Option<DesiredStatus>,
}

/// The reported-properties patch for the app slots alone (a slot's app restarted, stopped or
/// failed since the last report): `lastDesiredVersion` and `lastDesiredStatus` stay as
/// they were.
pub fn slots_patch(slots: &BTreeMap<String, SlotReport>) -> Value {
    let apps: Map<String, Value> = slots
        .iter()
        .map(|(slot, report)| {
            (
                slot.clone(),
                serde_json::to_value(report).unwrap_or(Value::Null),
            )
        })
        .collect();
    serde_json::json!({ APPS: apps })
}

/// The reported-properties patch for the app slots: each slot, the last desired `$version`
/// handled and how it went.
pub fn reported_patch(
    slots: &BTreeMap<String, SlotReport>,
    last_desired_version: u64,
    last_desired_status: &DesiredStatus,
) -> Value {
    let mut apps = Map::new();
    for (slot, report) in slots {
        apps.insert(
            slot.clone(),
            serde_json::to_value(report).unwrap_or(Value::Null),
        );
    }
    apps.insert(
        "lastDesiredVersion".to_owned(),
        Value::from(last_desired_version),
    );
    apps.insert(
        "lastDesiredStatus".to_owned(),
        serde_json::to_value(last_desired_status).unwrap_or(Value::Null),
    );
    serde_json::json!({ APPS: apps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn each_slot_entry_is_read_on_its_own_in_slot_order() {
        let desired = object(json!({
            "other": 1,
            "apps": {
                "zeta": {"deployment": "a.b.c"},
                "alpha": {"deployment": "d.e.f", "extra": true},
                "broken": {"deployment": 7},
                "long": {"deployment": "x".repeat(MAX_TOKEN_BYTES + 1)},
            }
        }));
        let entries = desired_deployments(&desired);
        assert_eq!(
            entries,
            vec![
                Ok(DesiredDeployment {
                    slot: "alpha".into(),
                    token: "d.e.f".into()
                }),
                Err(DesiredEntryError::Shape {
                    slot: "broken".into()
                }),
                Err(DesiredEntryError::TooLong {
                    slot: "long".into(),
                    found: MAX_TOKEN_BYTES + 1
                }),
                Ok(DesiredDeployment {
                    slot: "zeta".into(),
                    token: "a.b.c".into()
                }),
            ]
        );
    }

    #[test]
    fn no_apps_or_a_non_object_is_no_deployment() {
        assert!(desired_deployments(&object(json!({}))).is_empty());
        assert!(desired_deployments(&object(json!({"apps": "x"}))).is_empty());
        assert!(desired_deployments(&object(json!({"apps": null}))).is_empty());
    }

    #[test]
    fn slots_beyond_the_bound_are_refused_not_read() {
        let apps: Map<String, Value> = (0..MAX_DESIRED_SLOTS + 2)
            .map(|i| (format!("s{i:02}"), json!({"deployment": "a.b.c"})))
            .collect();
        let entries = desired_deployments(&object(json!({ "apps": apps })));
        assert_eq!(entries.len(), MAX_DESIRED_SLOTS + 2);
        assert!(entries[..MAX_DESIRED_SLOTS].iter().all(Result::is_ok));
        assert_eq!(
            entries[MAX_DESIRED_SLOTS],
            Err(DesiredEntryError::TooManySlots {
                slot: format!("s{MAX_DESIRED_SLOTS:02}")
            })
        );
    }

    #[test]
    fn the_patch_a_deploy_sets_is_what_the_device_reads() {
        let patch = desired_patch("cloud-app", "h.p.s");
        assert_eq!(
            desired_deployments(&object(patch)),
            vec![Ok(DesiredDeployment {
                slot: "cloud-app".into(),
                token: "h.p.s".into()
            })]
        );
    }

    #[test]
    fn the_next_serial_follows_the_greatest_the_twin_shows() {
        use crate::document::{Action, Deployment};
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let token = |serial, key: &ed25519_dalek::SigningKey| {
            let removal = Deployment {
                slot: "cloud-app".into(),
                compatible: "testudo-gateway".into(),
                serial,
                action: Action::Remove,
            };
            crate::sign(&removal, key).unwrap()
        };
        let trusted = [key.verifying_key()];
        let none = Map::new();
        assert_eq!(next_serial(&none, &none, "cloud-app", &trusted), 1);
        let desired = object(desired_patch("cloud-app", &token(4, &key)));
        assert_eq!(next_serial(&desired, &none, "cloud-app", &trusted), 5);
        assert_eq!(next_serial(&desired, &none, "other-slot", &trusted), 1);
        let reported = object(json!({"apps": {"cloud-app": {"serial": 9}}}));
        assert_eq!(next_serial(&desired, &reported, "cloud-app", &trusted), 10);
        // A token signed with another key does not count.
        let forged = object(desired_patch("cloud-app", &token(100, &other)));
        assert_eq!(next_serial(&forged, &none, "cloud-app", &trusted), 1);
    }

    #[test]
    fn reports_are_shaped_like_edge_agents() {
        let mut slots = BTreeMap::new();
        slots.insert(
            "cloud-app".to_owned(),
            SlotReport {
                app: Some("forwarder".into()),
                version: Some("1.2.0".into()),
                sha256: Some("ab".repeat(32)),
                serial: Some(3),
                runtime_status: RuntimeStatus::Running,
                restart_count: 0,
                exit_code: None,
                last_result: None,
            },
        );
        let status = DesiredStatus {
            code: 200,
            description: "applied".into(),
        };
        assert_eq!(
            reported_patch(&slots, 9, &status),
            json!({"apps": {
                "cloud-app": {
                    "app": "forwarder", "version": "1.2.0", "sha256": "ab".repeat(32),
                    "serial": 3, "runtimeStatus": "running", "restartCount": 0,
                    // `null` removes what an earlier report said (reported properties merge).
                    "exitCode": null, "lastResult": null
                },
                "lastDesiredVersion": 9,
                "lastDesiredStatus": {"code": 200, "description": "applied"}
            }})
        );
    }
}
