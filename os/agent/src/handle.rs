//! The application's side of an agent: the handle to report, send and answer with, the events
//! it receives, and acknowledgements.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::{AgentError, Result};
use crate::queue::{Item, Payload, Receipt};
use crate::sas;
use crate::twin::{self, DesiredChange};

/// What the agent tells the application.
#[derive(Debug)]
pub enum AgentEvent {
    /// Subscribed and about to GET the twin on connection number `connection` (1-based).
    Connected {
        /// How many connections this agent has made.
        connection: u64,
    },
    /// The connection ended; the agent reconnects on its own.
    Disconnected {
        /// Why, as text.
        reason: String,
        /// The hub refused the device's identity (CONNACK bad credentials / not authorized):
        /// retrying with the same identity will not help.
        identity_refused: bool,
    },
    /// The desired state changed (strictly increasing `$version`).
    Desired(DesiredChange),
    /// The full twin was received (reported side included) after a (re)connect or a gap.
    FullTwin {
        /// Reported `$version` in the hub.
        reported_version: u64,
    },
    /// The SAS token is about to be replaced (the connection drains and reconnects).
    RenewingToken,
    /// The hub throttled a request (429); the agent waits before retrying.
    Throttled {
        /// Wait before the retry.
        retry_after: Duration,
    },
    /// The service invoked a direct method.
    MethodCall(MethodCall),
    /// Something went wrong that the agent survived (e.g. malformed twin JSON from the hub).
    Error(AgentError),
}

/// Requests from handles to the agent task.
pub(crate) enum Command {
    Enqueue(Item),
    RespondMethod {
        rid: String,
        status: u16,
        body: Vec<u8>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// A direct-method call from the service. Answer it with [`AgentHandle::respond_method`] while
/// the connection it came on is up (the hub times the call out otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// Method name.
    pub name: String,
    /// Request id to answer.
    pub rid: String,
    /// Raw payload (JSON as sent by the service; not validated).
    pub payload: Vec<u8>,
}

/// Handle for the application: report properties, send telemetry, stop.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    pub(crate) commands: tokio::sync::mpsc::UnboundedSender<Command>,
    pub(crate) device_id: String,
}

impl AgentHandle {
    /// Queues a reported-properties patch and waits for the hub's acknowledgement; returns the
    /// new reported `$version`. Invalid patches (not an object, over 32 KB, deeper than 10) are
    /// refused at once.
    pub async fn report(&self, patch: &Value) -> Result<Option<u64>> {
        self.queue_report(patch)?.await
    }

    /// Queues a reported patch now (items are sent in the order they are queued) and returns
    /// a future for the hub's acknowledgement. Validation errors are returned at once; a full
    /// queue is reported through the future.
    pub fn queue_report(&self, patch: &Value) -> Result<Acknowledgement> {
        let bytes = twin::validate_reported(patch)
            .map_err(|source| AgentError::ValidateReported { source })?;
        Ok(self.enqueue(Payload::Reported(bytes)))
    }

    /// Queues a device-to-cloud message (`properties` are appended to the topic,
    /// percent-encoded) and waits for the hub's PUBACK.
    pub async fn send_telemetry(&self, body: Vec<u8>, properties: &[(&str, &str)]) -> Result<()> {
        self.queue_telemetry(body, properties).await.map(|_| ())
    }

    /// Queues a device-to-cloud message now and returns a future for its PUBACK.
    pub fn queue_telemetry(&self, body: Vec<u8>, properties: &[(&str, &str)]) -> Acknowledgement {
        let properties = properties
            .iter()
            .map(|(k, v)| format!("{}={}", sas::percent_encode(k), sas::percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.enqueue(Payload::Telemetry { body, properties })
    }

    fn enqueue(&self, payload: Payload) -> Acknowledgement {
        let (done, receipt) = oneshot::channel();
        let item = Item {
            payload,
            done: Some(done),
            attempts: 0,
        };
        // If the agent is gone the item is dropped with its sender, and the receipt reports it.
        let _ = self.commands.send(Command::Enqueue(item));
        Acknowledgement {
            receipt,
            device_id: self.device_id.clone(),
        }
    }

    /// Answers a direct method call with `status` and a JSON body. Sent only if the connection
    /// the call came on is still up (otherwise the service already saw a timeout).
    pub fn respond_method(&self, call: &MethodCall, status: u16, body: &Value) {
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
        let _ = self.commands.send(Command::RespondMethod {
            rid: call.rid.clone(),
            status,
            body,
        });
    }

    /// Disconnects cleanly and stops the agent task.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The hub's answer to a queued item: `Ok(Some(version))` for reported patches, `Ok(None)` for
/// telemetry.
#[derive(Debug)]
pub struct Acknowledgement {
    receipt: oneshot::Receiver<Receipt>,
    device_id: String,
}

impl std::future::Future for Acknowledgement {
    type Output = Receipt;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Receipt> {
        std::pin::Pin::new(&mut self.receipt)
            .poll(cx)
            .map(|answer| {
                answer.unwrap_or_else(|_| {
                    Err(AgentError::AgentStopped {
                        device_id: self.device_id.clone(),
                    })
                })
            })
    }
}
