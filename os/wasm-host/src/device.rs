//! testudo's device interfaces (`testudo:device`) on the host side: grant checks, then
//! forwarding to a [`DeviceBackend`] — the routed scheme handles on a device, or
//! [`LocalDevice`] (fixed sensor values, a telemetry file, loopback) for `testudo app run`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::grants::Grants;

/// Largest telemetry topic accepted, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Largest telemetry payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 10;
/// Largest `net.send` payload accepted, in bytes.
pub const MAX_NET_SEND_BYTES: usize = 1 << 20;
/// Denials reported per app before the host stops repeating itself.
const MAX_REPORTED_DENIALS: u64 = 16;

/// One telemetry record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryRecord {
    /// Topic, e.g. `telemetry`.
    pub topic: String,
    /// Payload bytes (the apps here publish JSON).
    pub payload: Vec<u8>,
}

/// A provider-side failure (the grant was fine, the provider could not serve it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The provider has no such channel or could not read it.
    #[error("{what} is unavailable")]
    Unavailable { what: String },
    /// A network destination could not be reached.
    #[error("{destination} is unreachable")]
    Unreachable { destination: String },
}

/// Where device calls go once the grant check passed. One backend may serve many apps.
pub trait DeviceBackend: Send + Sync {
    /// Reads `channel` through the sensor route `route`.
    fn read_sensor(&self, route: &str, channel: &str) -> Result<f64, BackendError>;
    /// Publishes `record` through the telemetry route `route`.
    fn publish(&self, route: &str, record: TelemetryRecord) -> Result<(), BackendError>;
    /// Takes the next record waiting on the telemetry route `route`.
    fn receive(&self, route: &str) -> Result<Option<TelemetryRecord>, BackendError>;
    /// Sends `data` to `destination` over TCP (already checked against the route).
    fn net_send(&self, destination: &str, data: &[u8]) -> Result<(), BackendError>;
}

/// The answer an app gets from a device call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDenial {
    /// No route grants it.
    NotGranted,
    /// Topic or payload too large.
    TooLarge,
    /// The provider failed.
    Unavailable,
}

/// The device interfaces of one app: its grants, its backend, its denial count.
pub struct DeviceHost {
    app: String,
    grants: Arc<Grants>,
    backend: Arc<dyn DeviceBackend>,
    denials: Arc<AtomicU64>,
}

impl std::fmt::Debug for DeviceHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHost")
            .field("app", &self.app)
            .finish()
    }
}

impl DeviceHost {
    /// Device interfaces for `app` with `grants`, forwarding to `backend`.
    pub fn new(app: &str, grants: Arc<Grants>, backend: Arc<dyn DeviceBackend>) -> Self {
        Self {
            app: app.to_owned(),
            grants,
            backend,
            denials: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many calls were refused so far (shared counter, readable after the run).
    pub fn denial_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.denials)
    }

    fn deny(&self, what: &str) -> DeviceDenial {
        let count = self.denials.fetch_add(1, Ordering::Relaxed);
        if count < MAX_REPORTED_DENIALS {
            eprintln!("testudo-wasm-host: app {}: denied {what}", self.app);
        }
        DeviceDenial::NotGranted
    }

    /// `sensor.read`.
    pub fn read_sensor(&self, channel: &str) -> Result<f64, DeviceDenial> {
        let Some(grant) = self.grants.sensor.as_ref() else {
            return Err(self.deny(&format!("sensor read of {channel:?} (no sensor route)")));
        };
        if !grant.allows(channel) {
            return Err(self.deny(&format!(
                "sensor read of {channel:?} (not in the route's allow list)"
            )));
        }
        self.backend
            .read_sensor(&grant.route, channel)
            .map_err(|_| DeviceDenial::Unavailable)
    }

    /// `telemetry.publish`.
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), DeviceDenial> {
        let Some(route) = self
            .grants
            .telemetry
            .as_ref()
            .and_then(|grant| grant.publish.as_ref())
        else {
            return Err(self.deny(&format!("telemetry publish on {topic:?} (no write route)")));
        };
        if topic.len() > MAX_TOPIC_BYTES || payload.len() > MAX_PAYLOAD_BYTES {
            return Err(DeviceDenial::TooLarge);
        }
        self.backend
            .publish(route, TelemetryRecord { topic, payload })
            .map_err(|_| DeviceDenial::Unavailable)
    }

    /// `telemetry.receive`.
    pub fn receive(&self) -> Result<Option<TelemetryRecord>, DeviceDenial> {
        let Some(route) = self
            .grants
            .telemetry
            .as_ref()
            .and_then(|grant| grant.receive.as_ref())
        else {
            return Err(self.deny("telemetry receive (no read route)"));
        };
        self.backend
            .receive(route)
            .map_err(|_| DeviceDenial::Unavailable)
    }

    /// `net.send`.
    pub fn net_send(&self, destination: &str, data: &[u8]) -> Result<(), DeviceDenial> {
        if !self.grants.net.contains(destination) {
            return Err(self.deny(&format!("net send to {destination} (not routed)")));
        }
        if data.len() > MAX_NET_SEND_BYTES {
            return Err(DeviceDenial::TooLarge);
        }
        self.backend
            .net_send(destination, data)
            .map_err(|_| DeviceDenial::Unavailable)
    }
}

/// A device backend without a device: fixed or file-backed sensor values, telemetry
/// appended to a JSON-lines file, records published also queued for receivers (loopback).
/// Used by `testudo app run` and tests; named for what it is, not a scheme handle.
#[derive(Debug, Default)]
pub struct LocalDevice {
    sensors: BTreeMap<String, f64>,
    sensor_dir: Option<PathBuf>,
    telemetry_out: Option<PathBuf>,
    loopback: bool,
    state: Mutex<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    inbox: VecDeque<TelemetryRecord>,
    published: Vec<TelemetryRecord>,
}

impl LocalDevice {
    /// A device with no sensors, no telemetry file, no loopback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Channel `channel` always reads `value`.
    pub fn with_sensor(mut self, channel: &str, value: f64) -> Self {
        self.sensors.insert(channel.to_owned(), value);
        self
    }

    /// Channels not set with [`Self::with_sensor`] are read from the file `<dir>/<channel>`.
    pub fn with_sensor_dir(mut self, dir: PathBuf) -> Self {
        self.sensor_dir = Some(dir);
        self
    }

    /// Published records are appended to `path` as JSON lines `{"topic":..,"payload":..}`.
    pub fn with_telemetry_file(mut self, path: PathBuf) -> Self {
        self.telemetry_out = Some(path);
        self
    }

    /// Published records are also queued for `receive` (sensor reader → forwarder).
    pub fn with_loopback(mut self) -> Self {
        self.loopback = true;
        self
    }

    /// Queues `record` for `receive`.
    pub fn push_inbox(&self, record: TelemetryRecord) {
        if let Ok(mut state) = self.state.lock() {
            state.inbox.push_back(record);
        }
    }

    /// Every record published so far.
    pub fn published(&self) -> Vec<TelemetryRecord> {
        self.state
            .lock()
            .map(|state| state.published.clone())
            .unwrap_or_default()
    }

    fn unavailable(what: String) -> BackendError {
        BackendError::Unavailable { what }
    }
}

/// The JSON line [`LocalDevice`] writes for a record.
pub fn record_json_line(record: &TelemetryRecord) -> String {
    let payload = match std::str::from_utf8(&record.payload) {
        Ok(text) => serde_json::json!({ "topic": record.topic, "payload": text }),
        Err(_) => {
            serde_json::json!({ "topic": record.topic, "payload_hex": hex::encode(&record.payload) })
        }
    };
    format!("{payload}\n")
}

/// Parses a line written by [`record_json_line`] (`payload` text or `payload_hex`).
pub fn parse_record_json_line(line: &str) -> Option<TelemetryRecord> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let topic = value.get("topic")?.as_str()?.to_owned();
    let payload = match (value.get("payload"), value.get("payload_hex")) {
        (Some(text), None) => text.as_str()?.as_bytes().to_vec(),
        (None, Some(hex_text)) => hex::decode(hex_text.as_str()?).ok()?,
        _ => return None,
    };
    Some(TelemetryRecord { topic, payload })
}

impl DeviceBackend for LocalDevice {
    fn read_sensor(&self, _route: &str, channel: &str) -> Result<f64, BackendError> {
        if let Some(value) = self.sensors.get(channel) {
            return Ok(*value);
        }
        let what = || format!("sensor channel {channel:?}");
        let dir = self
            .sensor_dir
            .as_ref()
            .ok_or_else(|| Self::unavailable(what()))?;
        if channel.is_empty() || channel.contains(['/', '\\']) || channel.starts_with('.') {
            return Err(Self::unavailable(what()));
        }
        std::fs::read_to_string(dir.join(channel))
            .ok()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .ok_or_else(|| Self::unavailable(what()))
    }

    fn publish(&self, _route: &str, record: TelemetryRecord) -> Result<(), BackendError> {
        if let Some(path) = &self.telemetry_out {
            let line = record_json_line(&record);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(line.as_bytes()))
                .map_err(|_| Self::unavailable(format!("telemetry file {}", path.display())))?;
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| Self::unavailable("telemetry queue".to_owned()))?;
        if self.loopback {
            state.inbox.push_back(record.clone());
        }
        state.published.push(record);
        Ok(())
    }

    fn receive(&self, _route: &str) -> Result<Option<TelemetryRecord>, BackendError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Self::unavailable("telemetry queue".to_owned()))?;
        Ok(state.inbox.pop_front())
    }

    fn net_send(&self, destination: &str, data: &[u8]) -> Result<(), BackendError> {
        tcp_send(destination, data)
    }
}

/// Connects to `destination`, writes `data`, closes (2 s connect timeout per address).
pub fn tcp_send(destination: &str, data: &[u8]) -> Result<(), BackendError> {
    let unreachable = || BackendError::Unreachable {
        destination: destination.to_owned(),
    };
    let addresses = destination.to_socket_addrs().map_err(|_| unreachable())?;
    for address in addresses {
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
            return stream
                .write_all(data)
                .and_then(|()| stream.flush())
                .map_err(|_| unreachable());
        }
    }
    Err(unreachable())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::grants::{SensorGrant, TelemetryGrant};

    fn host(grants: Grants, backend: Arc<LocalDevice>) -> DeviceHost {
        DeviceHost::new("test", Arc::new(grants), backend)
    }

    #[test]
    fn sensor_reads_need_a_route_and_an_allowed_channel() {
        let backend = Arc::new(LocalDevice::new().with_sensor("temperature", 21.5));
        let none = host(Grants::default(), Arc::clone(&backend));
        assert_eq!(
            none.read_sensor("temperature"),
            Err(DeviceDenial::NotGranted)
        );
        let granted = host(
            Grants {
                sensor: Some(SensorGrant {
                    route: "sensors".into(),
                    channels: BTreeSet::from(["temperature".to_owned()]),
                }),
                ..Grants::default()
            },
            backend,
        );
        assert_eq!(granted.read_sensor("temperature"), Ok(21.5));
        assert_eq!(
            granted.read_sensor("humidity"),
            Err(DeviceDenial::NotGranted)
        );
        assert_eq!(granted.denial_counter().load(Ordering::Relaxed), 1);
    }

    #[test]
    fn telemetry_rights_are_separate_and_sizes_are_capped() {
        let backend = Arc::new(LocalDevice::new().with_loopback());
        let writer = host(
            Grants {
                telemetry: Some(TelemetryGrant {
                    publish: Some("t".into()),
                    receive: None,
                }),
                ..Grants::default()
            },
            Arc::clone(&backend),
        );
        assert_eq!(writer.publish("t".into(), b"1".to_vec()), Ok(()));
        assert_eq!(
            writer.publish("t".into(), vec![0; MAX_PAYLOAD_BYTES + 1]),
            Err(DeviceDenial::TooLarge)
        );
        assert_eq!(writer.receive(), Err(DeviceDenial::NotGranted));
        let reader = host(
            Grants {
                telemetry: Some(TelemetryGrant {
                    publish: None,
                    receive: Some("t".into()),
                }),
                ..Grants::default()
            },
            backend,
        );
        let record = reader.receive().unwrap().unwrap();
        assert_eq!(record.payload, b"1");
        assert_eq!(reader.receive(), Ok(None));
        assert_eq!(
            reader.publish("t".into(), Vec::new()),
            Err(DeviceDenial::NotGranted)
        );
    }

    #[test]
    fn net_send_goes_only_to_routed_destinations() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let routed = listener.local_addr().unwrap().to_string();
        let device = host(
            Grants {
                net: BTreeSet::from([routed.clone()]),
                ..Grants::default()
            },
            Arc::new(LocalDevice::new()),
        );
        assert_eq!(
            device.net_send("127.0.0.1:9", b"x"),
            Err(DeviceDenial::NotGranted)
        );
        assert_eq!(device.net_send(&routed, b"hello"), Ok(()));
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut stream, &mut got).unwrap();
        assert_eq!(got, "hello");
    }

    #[test]
    fn record_lines_round_trip_text_and_binary() {
        for payload in [b"{\"v\":1}".to_vec(), vec![0xff, 0, 1]] {
            let record = TelemetryRecord {
                topic: "t".into(),
                payload,
            };
            let line = record_json_line(&record);
            assert_eq!(parse_record_json_line(line.trim_end()), Some(record));
        }
        assert_eq!(parse_record_json_line("{\"topic\":1}"), None);
        assert_eq!(parse_record_json_line("not json"), None);
    }

    #[test]
    fn sensor_dir_channels_cannot_name_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("humidity"), "40.5\n").unwrap();
        let device = LocalDevice::new().with_sensor_dir(dir.path().to_owned());
        assert_eq!(device.read_sensor("s", "humidity"), Ok(40.5));
        assert!(device.read_sensor("s", "../humidity").is_err());
        assert!(device.read_sensor("s", "missing").is_err());
    }
}
