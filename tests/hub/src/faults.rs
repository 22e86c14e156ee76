//! Fault injection: settings the tests of device software use to make the hub misbehave
//! the way IoT Hub does under stress. Set them through [`crate::RunningHub::set_faults`],
//! `POST /testudo/faults` on the service port, or by writing `DIR/faults.json` (re-read
//! every 200 ms while the emulator runs).
//!
//! Behaviour while set:
//! - `throttle`: new MQTT connections get CONNACK 3 (server unavailable); twin GET and
//!   reported-patch requests are answered with status 429 on `$iothub/twin/res/429/?$rid=`;
//!   telemetry is not acknowledged and the connection is closed (the message is not stored).
//! - `delayMs`: every reply to a device (CONNACK, SUBACK, PUBACK, twin responses, desired
//!   patches, method requests) is delayed by this many milliseconds.
//! - `refuseConnections`: TLS connections are closed right after accept.
//! - Dropping connections is an action, not a setting: [`crate::RunningHub::drop_connections`]
//!   or `POST /testudo/faults` with `{"dropConnections": "<device id>" | "*"}`.

use serde::{Deserialize, Serialize};

/// The fault settings in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Answer device operations as a throttled hub does.
    pub throttle: bool,
    /// Delay every reply to devices by this many milliseconds.
    pub delay_ms: u64,
    /// Close new connections immediately.
    pub refuse_connections: bool,
}
