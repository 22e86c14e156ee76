//! The schemes the agent component serves to apps:
//!
//! - `telemetry`: `write` one message (a JSON document, at most one scheme payload) per call.
//!   When the write returns, the message is in the persistent [`Spool`] and synced to disk; it
//!   is sent to the hub when connected (with the topic property `testudo-app=<writer>`).
//!   Refusals: `EINVAL` (empty or not JSON), `EAGAIN` (spool full: retry later; nothing spooled
//!   is lost), `EIO` (storage failed, including its sync: the message is not spooled). `fstat` size = messages pending for the hub.
//!   A message that is the WASM host's envelope `{"topic": T, "payload": P}` is sent as `P`
//!   (its text when a string, else its JSON) with the topic property `testudo-topic=T`
//!   ([`hub_message`]).
//! - `identity` (read-only): `read` returns one JSON line, the plan's cloud section:
//!   `{"device_id":..,"hub":..,"identity":..,"dps_scope":..}`.

use std::sync::{Arc, Mutex, PoisonError};

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};
use tokio::sync::Notify;

use crate::component_log::ComponentLog;
use crate::error::AgentError;
use crate::spool::{Spool, SpoolFiles};

/// Capability name of the telemetry scheme.
pub const TELEMETRY: &str = "telemetry";
/// Capability name of the identity scheme.
pub const IDENTITY: &str = "identity";

/// What goes to the hub for a spooled message: body and topic (when the message is the WASM
/// host's `{"topic", "payload"}` envelope; otherwise the message itself, no topic).
pub fn hub_message(message: &[u8]) -> (Vec<u8>, Option<String>) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(message) else {
        return (message.to_vec(), None);
    };
    match (map.len(), map.get("topic"), map.get("payload")) {
        (2, Some(serde_json::Value::String(topic)), Some(payload)) => {
            let body = match payload {
                serde_json::Value::String(text) => text.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            (body, Some(topic.clone()))
        }
        _ => (message.to_vec(), None),
    }
}

/// A handle to one of the agent's schemes.
#[derive(Debug, Clone)]
pub enum AppNode {
    /// An app's telemetry stream.
    Telemetry {
        /// The app (the route's consumer).
        app: String,
    },
    /// A reader of the identity document.
    Identity {
        /// How far this handle has read.
        offset: usize,
    },
}

/// Serves `telemetry` and `identity`.
pub struct AppSchemes<F: SpoolFiles> {
    spool: Arc<Mutex<Spool<F>>>,
    identity: Vec<u8>,
    wake: Arc<Notify>,
    log: Arc<ComponentLog>,
    refusing: bool,
}

impl<F: SpoolFiles> std::fmt::Debug for AppSchemes<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSchemes")
            .field("identity", &String::from_utf8_lossy(&self.identity))
            .finish_non_exhaustive()
    }
}

impl<F: SpoolFiles> AppSchemes<F> {
    /// Serves `identity` (the document) and `telemetry` into `spool`, waking `wake` for each
    /// accepted message.
    pub fn new(
        spool: Arc<Mutex<Spool<F>>>,
        identity: Vec<u8>,
        wake: Arc<Notify>,
        log: Arc<ComponentLog>,
    ) -> Self {
        Self {
            spool,
            identity,
            wake,
            log,
            refusing: false,
        }
    }

    fn accept(&mut self, app: &str, data: &[u8]) -> Result<usize, Errno> {
        if data.is_empty() || serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
            self.log.line(&format!(
                "telemetry from {app} refused: a message must be one JSON document ({} bytes given)",
                data.len()
            ));
            return Err(Errno::EINVAL);
        }
        let pushed = self
            .spool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(app, data);
        match pushed {
            Ok(_) => {
                if self.refusing {
                    self.refusing = false;
                    self.log.line("telemetry spool has room again");
                }
                self.wake.notify_one();
                Ok(data.len())
            }
            Err(error @ AgentError::SpoolFull { .. }) => {
                if !self.refusing {
                    self.refusing = true;
                    self.log.line(&format!(
                        "telemetry from {app} refused until the hub acknowledges more: {error}"
                    ));
                }
                Err(Errno::EAGAIN)
            }
            Err(error) => {
                self.log.line(&format!(
                    "telemetry from {app} refused: {}",
                    crate::agent::error_chain(&error)
                ));
                Err(Errno::EIO)
            }
        }
    }
}

impl<F: SpoolFiles> SchemeProvider for AppSchemes<F> {
    type Node = AppNode;

    fn root(&mut self, grant: &Grant) -> Result<AppNode, Errno> {
        match grant.capability.as_str() {
            TELEMETRY => Ok(AppNode::Telemetry {
                app: grant.consumer.clone(),
            }),
            IDENTITY => Ok(AppNode::Identity { offset: 0 }),
            _ => Err(Errno::ENOENT),
        }
    }

    fn open(
        &mut self,
        _parent: &AppNode,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<AppNode>, Errno> {
        Err(Errno::ENOENT)
    }

    fn read(&mut self, node: &mut AppNode, buf: &mut [u8]) -> Result<usize, Errno> {
        match node {
            AppNode::Identity { offset } => {
                let rest = self.identity.get(*offset..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                *offset += n;
                Ok(n)
            }
            AppNode::Telemetry { .. } => Err(Errno::EBADF),
        }
    }

    fn write(&mut self, node: &mut AppNode, data: &[u8]) -> Result<usize, Errno> {
        match node {
            AppNode::Telemetry { app } => {
                let app = app.clone();
                self.accept(&app, data)
            }
            AppNode::Identity { .. } => Err(Errno::EBADF),
        }
    }

    fn fstat(&mut self, node: &AppNode) -> Result<(NodeKind, u64), Errno> {
        match node {
            AppNode::Telemetry { .. } => {
                let pending = self
                    .spool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pending();
                Ok((NodeKind::Stream, pending as u64))
            }
            AppNode::Identity { .. } => Ok((NodeKind::File, self.identity.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{MemoryFiles, SpoolLimits};
    use testudo_scheme::Server;

    fn grant(capability: &str, rights: Rights) -> Grant {
        Grant {
            consumer: "forwarder".into(),
            capability: capability.into(),
            rights,
            allow: Vec::new(),
        }
    }

    #[test]
    fn wasm_host_envelopes_are_unwrapped_and_other_messages_kept() {
        assert_eq!(
            hub_message(br#"{"topic":"aggregate","payload":{"count":10}}"#),
            (br#"{"count":10}"#.to_vec(), Some("aggregate".to_owned()))
        );
        assert_eq!(
            hub_message(br#"{"topic":"t","payload":"21.5 C"}"#),
            (b"21.5 C".to_vec(), Some("t".to_owned()))
        );
        for kept in [
            &br#"{"topic":"t","payload":1,"x":2}"#[..],
            br#"{"value":1}"#,
            b"[1]",
        ] {
            assert_eq!(hub_message(kept), (kept.to_vec(), None));
        }
    }

    #[test]
    fn telemetry_is_spooled_and_identity_is_read_only() {
        let limits = SpoolLimits {
            max_messages: 1,
            max_bytes: 1024,
        };
        let (spool, _) = Spool::open(MemoryFiles::default(), limits).expect("spool");
        let spool = Arc::new(Mutex::new(spool));
        let provider = AppSchemes::new(
            spool.clone(),
            b"{\"device_id\":\"d\"}\n".to_vec(),
            Arc::new(Notify::new()),
            Arc::new(ComponentLog::default()),
        );
        let mut server = Server::new(provider);
        let telemetry = server
            .grant(&grant(TELEMETRY, Rights::Write))
            .expect("telemetry");
        let identity = server
            .grant(&grant(IDENTITY, Rights::Read))
            .expect("identity");
        assert!(server.grant(&grant("other", Rights::Read)).is_err());
        let thread = std::thread::spawn(move || server.run());
        assert_eq!(telemetry.write(b"{\"t\":21.5}").expect("accepted"), 10);
        let errno =
            |r: Result<usize, testudo_scheme::SchemeError>| r.expect_err("refused").refused_errno();
        assert_eq!(errno(telemetry.write(b"not json")), Some(Errno::EINVAL));
        assert_eq!(errno(telemetry.write(b"{}")), Some(Errno::EAGAIN));
        assert_eq!(telemetry.fstat().expect("fstat").size, 1);
        let mut buf = [0u8; 64];
        let n = identity.read(&mut buf).expect("read");
        assert_eq!(&buf[..n], b"{\"device_id\":\"d\"}\n");
        assert_eq!(identity.read(&mut buf).expect("eof"), 0);
        assert!(identity.write(b"x").is_err());
        drop((telemetry, identity));
        thread.join().expect("server thread").expect("server ends");
        let sent = spool.lock().expect("lock").take_unsent(10);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].source, "forwarder");
        assert_eq!(sent[0].body, b"{\"t\":21.5}");
    }
}
