//! [`DeviceBackend`] over testudo scheme handles: the routed handles `testudo-init` passes
//! the host (`TESTUDO_HANDLES`), used with the interface conventions of
//! `testudo_scheme::interfaces`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;

use testudo_scheme::{Handle, Rights};

use crate::device::{BackendError, DeviceBackend, TelemetryRecord, MAX_PAYLOAD_BYTES};

/// Device calls forwarded to scheme handles, by route name.
#[derive(Debug)]
pub struct SchemeDevice {
    handles: Mutex<BTreeMap<String, Handle>>,
    net_routes: Vec<String>,
}

impl SchemeDevice {
    /// A backend over `handles` (route name → handle); `net_routes` names the `net` routes.
    pub fn new(handles: BTreeMap<String, Handle>, net_routes: Vec<String>) -> Self {
        Self {
            handles: Mutex::new(handles),
            net_routes,
        }
    }

    fn with_handle<R>(
        &self,
        route: &str,
        what: &str,
        action: impl FnOnce(&Handle) -> Option<R>,
    ) -> Result<R, BackendError> {
        let unavailable = || BackendError::Unavailable {
            what: format!("{what} via route {route}"),
        };
        let handles = self.handles.lock().map_err(|_| unavailable())?;
        let handle = handles.get(route).ok_or_else(unavailable)?;
        action(handle).ok_or_else(unavailable)
    }
}

/// Parses a sensor reading line `<name> <value> <unit>`; the value if the name is `channel`.
pub fn parse_sensor_line(line: &str, channel: &str) -> Option<f64> {
    let mut fields = line.split_whitespace();
    let name = fields.next()?;
    let value = fields.next()?.parse().ok()?;
    (name == channel).then_some(value)
}

/// The one JSON document a telemetry `write` carries: `{"topic":..,"payload":..}` with the
/// payload embedded as JSON when it is JSON, as a string otherwise.
pub fn telemetry_message(record: &TelemetryRecord) -> Vec<u8> {
    let payload =
        serde_json::from_slice::<serde_json::Value>(&record.payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&record.payload).into_owned())
        });
    serde_json::json!({ "topic": record.topic, "payload": payload })
        .to_string()
        .into_bytes()
}

fn parse_telemetry_message(bytes: &[u8]) -> TelemetryRecord {
    let parsed: Option<(String, Vec<u8>)> = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|value| {
            let topic = value.get("topic")?.as_str()?.to_owned();
            let payload = match value.get("payload")? {
                serde_json::Value::String(text) => text.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            Some((topic, payload))
        });
    match parsed {
        Some((topic, payload)) => TelemetryRecord { topic, payload },
        None => TelemetryRecord {
            topic: "telemetry".to_owned(),
            payload: bytes.to_vec(),
        },
    }
}

impl DeviceBackend for SchemeDevice {
    fn read_sensor(&self, route: &str, channel: &str) -> Result<f64, BackendError> {
        self.with_handle(route, &format!("sensor {channel:?}"), |handle| {
            let mut buffer = [0u8; 256];
            let n = handle.read(&mut buffer).ok()?;
            parse_sensor_line(std::str::from_utf8(&buffer[..n]).ok()?, channel)
        })
    }

    fn publish(&self, route: &str, record: TelemetryRecord) -> Result<(), BackendError> {
        self.with_handle(route, "telemetry publish", |handle| {
            handle.write_all(&telemetry_message(&record)).ok()
        })
    }

    fn receive(&self, route: &str) -> Result<Option<TelemetryRecord>, BackendError> {
        self.with_handle(route, "telemetry receive", |handle| {
            let mut buffer = vec![0u8; MAX_PAYLOAD_BYTES];
            let n = handle.read(&mut buffer).ok()?;
            Some((n > 0).then(|| parse_telemetry_message(&buffer[..n])))
        })
    }

    fn net_send(&self, destination: &str, data: &[u8]) -> Result<(), BackendError> {
        let handles = self.handles.lock().map_err(|_| BackendError::Unreachable {
            destination: destination.to_owned(),
        })?;
        for route in &self.net_routes {
            let Some(handle) = handles.get(route) else {
                continue;
            };
            if let Ok(fd) = handle.open_raw(
                &testudo_plan::interfaces::net_tcp_path(destination),
                Rights::ReadWrite,
            ) {
                let mut stream = TcpStream::from(fd);
                return stream
                    .write_all(data)
                    .and_then(|()| stream.flush())
                    .map_err(|_| BackendError::Unreachable {
                        destination: destination.to_owned(),
                    });
            }
        }
        Err(BackendError::Unreachable {
            destination: destination.to_owned(),
        })
    }
}

/// Writes an app's stdout/stderr to a `log` handle.
#[derive(Debug)]
pub struct LogWriter(pub Handle);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write_all(buf)
            .map(|()| buf.len())
            .map_err(std::io::Error::other)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_lines_must_name_the_channel() {
        assert_eq!(
            parse_sensor_line("temperature 21.5 C\n", "temperature"),
            Some(21.5)
        );
        assert_eq!(parse_sensor_line("humidity 40 %\n", "temperature"), None);
        assert_eq!(parse_sensor_line("temperature warm C", "temperature"), None);
    }

    #[test]
    fn telemetry_messages_embed_json_payloads_and_round_trip() {
        let record = TelemetryRecord {
            topic: "telemetry".into(),
            payload: br#"{"value":1}"#.to_vec(),
        };
        let message = telemetry_message(&record);
        let value: serde_json::Value = serde_json::from_slice(&message).unwrap();
        assert_eq!(
            value,
            serde_json::json!({ "topic": "telemetry", "payload": { "value": 1 } })
        );
        assert_eq!(parse_telemetry_message(&message), record);
    }
}
