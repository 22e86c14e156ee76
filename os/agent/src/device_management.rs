//! What the agent component tells the hub about the device, and the direct methods it
//! answers for it:
//!
//! - **Reported device properties**, in the shape of Azure's `DeviceInformation` interface
//!   (`dtmi:azure:DeviceManagement:DeviceInformation;1`, a `deviceInformation` component as
//!   Azure Device Update's agent reports it) plus a `testudo` component: the image version and
//!   plan hash, the board and the slot it booted from.
//! - **Direct methods**: `reboot` (answered 200 first, then init's `power` capability is asked
//!   to reboot: components stop in order, the data partition is unmounted), `diagnostic` (what
//!   the agent knows of itself), and 404 with a JSON body for any other name, as IoT Hub
//!   expects of a device that does not implement a method.

use serde_json::{json, Value};
use testudo_plan::env::SystemInfo;

/// The manufacturer reported for every testudo device (the board does not name one).
pub const MANUFACTURER: &str = "testudo";
/// The direct method that reboots the device.
pub const REBOOT_METHOD: &str = "reboot";
/// The direct method that reports what the agent knows of itself.
pub const DIAGNOSTIC_METHOD: &str = "diagnostic";

/// The reported-properties patch describing the device.
pub fn reported_properties(system: &SystemInfo) -> Value {
    json!({
        "deviceInformation": {
            "__t": "c",
            "manufacturer": MANUFACTURER,
            "model": system.board,
            "swVersion": software_version(system),
            "osName": "testudo",
            "processorArchitecture": system.arch,
        },
        "testudo": {
            "__t": "c",
            "system": system.name,
            "version": system.version,
            "compatible": system.compatible,
            "planHash": system.plan_hash,
            "bootedSlot": system.slot,
        },
    })
}

/// The software version: the image version and the first 12 hex digits of the plan hash
/// (`0.1.0+3f2a…`), so two builds of one version with different plans differ.
pub fn software_version(system: &SystemInfo) -> String {
    let short: String = system.plan_hash.chars().take(12).collect();
    if short.is_empty() {
        system.version.clone()
    } else {
        format!("{}+{short}", system.version)
    }
}

/// What the agent knows of itself, for the `diagnostic` method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// Telemetry messages in the spool, not yet acknowledged by the hub.
    pub spooled: usize,
    /// Connections made since the agent started.
    pub connections: u64,
    /// Seconds since the agent started.
    pub uptime_seconds: u64,
    /// Whether the agent holds init's `power` capability.
    pub can_reboot: bool,
}

/// How to answer a direct method, and what to do afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodAnswer {
    /// The status returned to the caller.
    pub status: u16,
    /// The JSON payload returned.
    pub body: Value,
    /// Ask init to reboot once the answer is sent.
    pub reboot_after: bool,
}

/// The answer to the direct method `name` (its payload is not needed by any method yet).
pub fn answer_method(name: &str, system: &SystemInfo, diagnostics: &Diagnostics) -> MethodAnswer {
    match name {
        REBOOT_METHOD if diagnostics.can_reboot => MethodAnswer {
            status: 200,
            body: json!({ "status": "rebooting" }),
            reboot_after: true,
        },
        REBOOT_METHOD => MethodAnswer {
            status: 403,
            body: json!({
                "error": "this device's plan does not route init's power capability to the agent"
            }),
            reboot_after: false,
        },
        DIAGNOSTIC_METHOD => MethodAnswer {
            status: 200,
            body: json!({
                "swVersion": software_version(system),
                "bootedSlot": system.slot,
                "planHash": system.plan_hash,
                "spooledTelemetry": diagnostics.spooled,
                "connections": diagnostics.connections,
                "uptimeSeconds": diagnostics.uptime_seconds,
                "canReboot": diagnostics.can_reboot,
            }),
            reboot_after: false,
        },
        other => MethodAnswer {
            status: 404,
            body: json!({
                "error": format!("method {other:?} is not implemented by this device"),
                "methods": [REBOOT_METHOD, DIAGNOSTIC_METHOD],
            }),
            reboot_after: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> SystemInfo {
        SystemInfo {
            name: "gateway".into(),
            version: "0.1.0".into(),
            compatible: "testudo-gateway".into(),
            plan_hash: "3f2a9c0d11e4b5a6c7d8e9f0".into(),
            board: "qemu-x86_64".into(),
            arch: "x86_64".into(),
            slot: Some("A".into()),
        }
    }

    fn diagnostics(can_reboot: bool) -> Diagnostics {
        Diagnostics {
            spooled: 3,
            connections: 2,
            uptime_seconds: 40,
            can_reboot,
        }
    }

    #[test]
    fn reports_device_information_with_version_plan_and_slot() {
        let reported = reported_properties(&system());
        assert_eq!(reported["deviceInformation"]["__t"], "c");
        assert_eq!(reported["deviceInformation"]["model"], "qemu-x86_64");
        assert_eq!(
            reported["deviceInformation"]["swVersion"],
            "0.1.0+3f2a9c0d11e4"
        );
        assert_eq!(reported["testudo"]["bootedSlot"], "A");
        assert_eq!(reported["testudo"]["planHash"], "3f2a9c0d11e4b5a6c7d8e9f0");
        // Valid as a reported patch (the agent refuses anything else before sending).
        crate::twin::validate_reported(&reported).expect("a valid reported patch");
    }

    #[test]
    fn reboot_is_answered_first_and_only_with_the_power_capability() {
        let yes = answer_method("reboot", &system(), &diagnostics(true));
        assert_eq!((yes.status, yes.reboot_after), (200, true));
        let no = answer_method("reboot", &system(), &diagnostics(false));
        assert_eq!((no.status, no.reboot_after), (403, false));
    }

    #[test]
    fn diagnostic_reports_and_unknown_methods_get_404_with_a_json_body() {
        let diag = answer_method("diagnostic", &system(), &diagnostics(true));
        assert_eq!(diag.status, 200);
        assert_eq!(diag.body["spooledTelemetry"], 3);
        let unknown = answer_method("selfDestruct", &system(), &diagnostics(true));
        assert_eq!(unknown.status, 404);
        assert!(!unknown.reboot_after);
        assert!(unknown.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("selfDestruct")));
    }
}
