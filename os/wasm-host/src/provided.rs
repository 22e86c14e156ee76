//! Capabilities a WASM app provides: the host serves them as a scheme provider (the
//! `testudo_scheme` provider library), so other components reach them through routes like
//! any driver's.
//!
//! Only `telemetry` can be provided by an app. What the app publishes (`telemetry.publish`
//! without a write route, see [`crate::grants`]) goes to every consumer holding a root handle
//! for that capability: each consumer handle has its own queue, and `read` on it returns the
//! next message — the host's `{"topic": .., "payload": ..}` envelope, one per read — or 0
//! bytes when none is waiting (consumers poll; the provider never blocks on them).
//!
//! Bounds: a queue keeps at most [`MAX_QUEUED`] messages; when full, the oldest is dropped
//! (telemetry is a stream of current values; a slow consumer must not stall the publisher).
//! Messages published before any consumer is attached wait in the capability's own queue
//! (same bound) and go to the first consumer. A consumer's `write` is refused (`EPERM`): an
//! app-provided telemetry stream has one writer, the app. `fstat` size = messages waiting.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider, Server};

use crate::device::{BackendError, DeviceBackend, TelemetryRecord};
use crate::error::HostError;
use crate::scheme_device::telemetry_message;

/// Messages one queue holds before the oldest is dropped.
pub const MAX_QUEUED: usize = 256;

type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

#[derive(Debug, Default)]
struct Capability {
    /// Messages published while no consumer was attached.
    unclaimed: VecDeque<Vec<u8>>,
    /// Attached consumers' queues (pruned when their handles are gone).
    consumers: Vec<Weak<Mutex<VecDeque<Vec<u8>>>>>,
}

/// The telemetry capabilities one app provides, shared by the app's publish calls and the
/// scheme server that hands them to consumers.
#[derive(Debug, Clone, Default)]
pub struct ProvidedTelemetry {
    capabilities: Arc<Mutex<BTreeMap<String, Capability>>>,
}

fn push_bounded(queue: &mut VecDeque<Vec<u8>>, message: Vec<u8>) {
    if queue.len() >= MAX_QUEUED {
        queue.pop_front();
    }
    queue.push_back(message);
}

impl ProvidedTelemetry {
    /// Serves the telemetry capabilities named in `capabilities`.
    pub fn new<'a>(capabilities: impl IntoIterator<Item = &'a str>) -> Self {
        let capabilities = capabilities
            .into_iter()
            .map(|name| (name.to_owned(), Capability::default()))
            .collect();
        Self {
            capabilities: Arc::new(Mutex::new(capabilities)),
        }
    }

    /// Publishes `message` on `capability` to every attached consumer (or keeps it for the
    /// first one). False if this app does not provide `capability`.
    pub fn publish(&self, capability: &str, message: &[u8]) -> bool {
        let mut capabilities = self
            .capabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = capabilities.get_mut(capability) else {
            return false;
        };
        entry.consumers.retain(|queue| queue.strong_count() > 0);
        if entry.consumers.is_empty() {
            push_bounded(&mut entry.unclaimed, message.to_vec());
            return true;
        }
        for queue in entry.consumers.iter().filter_map(Weak::upgrade) {
            push_bounded(
                &mut queue.lock().unwrap_or_else(PoisonError::into_inner),
                message.to_vec(),
            );
        }
        true
    }

    /// Starts the scheme server for these capabilities on `control` (the provider control
    /// socket `testudo-init` passes, [`testudo_scheme::provider_control`]) on its own thread;
    /// it serves until init closes the control socket.
    pub fn serve(&self, app: &str, control: OwnedFd) -> Result<(), HostError> {
        let provider = TelemetryProvider {
            shared: self.clone(),
        };
        std::thread::Builder::new()
            .name("provided-telemetry".to_owned())
            .spawn(move || {
                if let Err(error) = Server::new(provider).with_control(control).run() {
                    eprintln!("testudo-wasm-host: serving provided telemetry stopped: {error}");
                }
            })
            .map_err(|source| HostError::Spawn {
                app: format!("{app} (provided telemetry)"),
                source,
            })?;
        Ok(())
    }

    fn attach(&self, capability: &str) -> Option<Queue> {
        let mut capabilities = self
            .capabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = capabilities.get_mut(capability)?;
        entry.consumers.retain(|queue| queue.strong_count() > 0);
        let queue = Arc::new(Mutex::new(std::mem::take(&mut entry.unclaimed)));
        entry.consumers.push(Arc::downgrade(&queue));
        Some(queue)
    }
}

/// The [`SchemeProvider`] of an app's provided telemetry: one node per consumer queue.
#[derive(Debug)]
pub struct TelemetryProvider {
    shared: ProvidedTelemetry,
}

impl TelemetryProvider {
    /// A provider over `shared` (for serving in-process, e.g. with [`Server::grant`]).
    pub fn new(shared: ProvidedTelemetry) -> Self {
        Self { shared }
    }
}

impl SchemeProvider for TelemetryProvider {
    type Node = Queue;

    fn root(&mut self, grant: &Grant) -> Result<Queue, Errno> {
        self.shared.attach(&grant.capability).ok_or(Errno::ENOENT)
    }

    fn open(
        &mut self,
        _parent: &Queue,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<Queue>, Errno> {
        Err(Errno::ENOENT)
    }

    fn read(&mut self, node: &mut Queue, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut queue = node.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(message) = queue.pop_front() else {
            return Ok(0);
        };
        let Some(target) = buf.get_mut(..message.len()) else {
            // Larger than the reader's buffer: dropped, never delivered cut in half.
            return Err(Errno::EMSGSIZE);
        };
        target.copy_from_slice(&message);
        Ok(message.len())
    }

    fn write(&mut self, _node: &mut Queue, _data: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EPERM)
    }

    fn fstat(&mut self, node: &Queue) -> Result<(NodeKind, u64), Errno> {
        let waiting = node.lock().unwrap_or_else(PoisonError::into_inner).len();
        Ok((NodeKind::Stream, waiting as u64))
    }
}

/// A device backend that publishes into the app's own provided capability and forwards
/// everything else to `routes` (the routed scheme handles).
pub struct ProvidingDevice {
    provided: ProvidedTelemetry,
    publish_into: String,
    routes: Arc<dyn DeviceBackend>,
}

impl std::fmt::Debug for ProvidingDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvidingDevice")
            .field("provided", &self.provided)
            .finish_non_exhaustive()
    }
}

impl ProvidingDevice {
    /// Publishing to `publish_into` (a capability in `provided`) stays in this host; the
    /// rest goes to `routes`.
    pub fn new(
        provided: ProvidedTelemetry,
        publish_into: String,
        routes: Arc<dyn DeviceBackend>,
    ) -> Self {
        Self {
            provided,
            publish_into,
            routes,
        }
    }
}

impl DeviceBackend for ProvidingDevice {
    fn read_sensor(&self, route: &str, channel: &str) -> Result<f64, BackendError> {
        self.routes.read_sensor(route, channel)
    }

    fn publish(&self, route: &str, record: TelemetryRecord) -> Result<(), BackendError> {
        if route != self.publish_into {
            return self.routes.publish(route, record);
        }
        let message = telemetry_message(&record);
        let unavailable = || BackendError::Unavailable {
            what: format!("provided telemetry {route}"),
        };
        // A consumer reads one message per scheme read: larger ones could never be delivered.
        if message.len() > testudo_scheme::MAX_PAYLOAD {
            return Err(unavailable());
        }
        if self.provided.publish(route, &message) {
            Ok(())
        } else {
            Err(unavailable())
        }
    }

    fn receive(&self, route: &str) -> Result<Option<TelemetryRecord>, BackendError> {
        self.routes.receive(route)
    }

    fn net_send(&self, destination: &str, data: &[u8]) -> Result<(), BackendError> {
        self.routes.net_send(destination, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(capability: &str, consumer: &str) -> Grant {
        Grant {
            consumer: consumer.into(),
            capability: capability.into(),
            rights: Rights::Read,
            allow: Vec::new(),
        }
    }

    #[test]
    fn consumers_each_receive_what_the_app_publishes_in_order() {
        let provided = ProvidedTelemetry::new(["readings"]);
        assert!(provided.publish("readings", b"early"));
        assert!(!provided.publish("other", b"x"));
        let mut server = Server::new(TelemetryProvider::new(provided.clone()));
        let first = server.grant(&grant("readings", "a")).unwrap();
        let second = server.grant(&grant("readings", "b")).unwrap();
        assert!(server.grant(&grant("missing", "c")).is_err());
        provided.publish("readings", b"one");
        provided.publish("readings", b"two");
        let serving = std::thread::spawn(move || server.run());
        let read = |handle: &testudo_scheme::Handle| {
            let mut buffer = [0u8; 64];
            let n = handle.read(&mut buffer).unwrap();
            buffer[..n].to_vec()
        };
        assert_eq!(read(&first), b"early");
        assert_eq!(read(&first), b"one");
        assert_eq!(read(&first), b"two");
        assert_eq!(read(&first), b"");
        assert_eq!(
            read(&second),
            b"one",
            "unclaimed messages go to the first consumer"
        );
        assert_eq!(second.fstat().unwrap().size, 1);
        assert!(second.write(b"x").is_err(), "consumers cannot write");
        drop((first, second));
        serving.join().unwrap().unwrap();
    }

    #[test]
    fn a_full_queue_drops_its_oldest_message() {
        let provided = ProvidedTelemetry::new(["t"]);
        for index in 0..MAX_QUEUED + 3 {
            provided.publish("t", index.to_string().as_bytes());
        }
        let queue = provided.attach("t").unwrap();
        let queue = queue.lock().unwrap();
        assert_eq!(queue.len(), MAX_QUEUED);
        assert_eq!(queue.front().unwrap(), b"3");
    }
}
