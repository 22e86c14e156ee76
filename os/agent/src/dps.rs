//! Device Provisioning Service (DPS) registration over MQTT, with a symmetric key (SAS,
//! `skn=registration`) or an X.509 client certificate.
//!
//! Flow: CONNECT (client id = registration id, username
//! `{idScope}/registrations/{registrationId}/api-version=2019-03-31`) -> SUBSCRIBE
//! `$dps/registrations/res/#` -> PUBLISH `$dps/registrations/PUT/iotdps-register/?$rid=r` with
//! `{"registrationId":...}` -> answers 202 `{"operationId":...,"status":"assigning"}` -> poll
//! `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=r&operationId=o` after `retry-after`
//! until 200 `{"status":"assigned","registrationState":{"assignedHub","deviceId"}}`.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::time::Instant;

use crate::dial::{self, Dialer};
use crate::error::{AgentError, Result};
use crate::mqtt_loop::StreamEventLoop;
use crate::sas::{self, SasSigner};
use crate::tls::TlsSettings;

/// DPS API version used in the username.
pub const API_VERSION: &str = "2019-03-31";

/// How to reach DPS and who registers.
#[derive(Clone)]
pub struct DpsConfig {
    /// Host name to dial (e.g. `global.azure-devices-provisioning.net`).
    pub host: String,
    /// MQTT over TLS port (8883).
    pub port: u16,
    /// ID scope of the DPS instance.
    pub id_scope: String,
    /// Registration id (becomes the device id with most enrollments).
    pub registration_id: String,
    /// Trust anchor (and client certificate for X.509).
    pub tls: TlsSettings,
    /// Signer for SAS (symmetric-key attestation); `None` for X.509.
    pub signer: Option<Arc<dyn SasSigner>>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Makes the TCP connection (inside a sandbox: the `net` route); `None`: dial directly.
    pub dialer: Option<Arc<dyn Dialer>>,
}

impl std::fmt::Debug for DpsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpsConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("sas", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

/// Where DPS assigned the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// IoT Hub host name.
    pub assigned_hub: String,
    /// Device id in that hub.
    pub device_id: String,
}

/// The state of a registration operation as DPS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationStatus {
    /// Still working; poll `operation_id` again.
    Assigning {
        /// Operation to poll.
        operation_id: String,
    },
    /// Done.
    Assigned(Assignment),
    /// DPS refused (e.g. disabled enrollment).
    Failed {
        /// DPS error text.
        message: String,
    },
}

/// Username for DPS.
pub fn username(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}/api-version={API_VERSION}")
}

/// Why a DPS answer body is not a registration operation's state.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// Not JSON.
    #[error("DPS answer is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// A field the state needs is absent or not text.
    #[error("DPS answer has no {field:?}")]
    Missing {
        /// The field (`status`, `operationId`, `registrationState`, `assignedHub`, `deviceId`).
        field: &'static str,
    },
    /// A `status` DPS does not document.
    #[error("DPS answer has an unknown status {status:?}")]
    UnknownStatus {
        /// The status as received.
        status: String,
    },
}

/// Parses a DPS answer body. Never panics on arbitrary input.
pub fn parse_operation(body: &[u8]) -> std::result::Result<OperationStatus, OperationError> {
    let value: Value = serde_json::from_slice(body).map_err(OperationError::NotJson)?;
    operation_status(&value)
}

/// The operation state a DPS answer (already JSON) says.
pub fn operation_status(value: &Value) -> std::result::Result<OperationStatus, OperationError> {
    let text = |v: &Value, field: &'static str| {
        v.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(OperationError::Missing { field })
    };
    let status = text(value, "status")?;
    match status.as_str() {
        "assigning" | "unassigned" => Ok(OperationStatus::Assigning {
            operation_id: text(value, "operationId")?,
        }),
        "assigned" => {
            let state = value
                .get("registrationState")
                .ok_or(OperationError::Missing {
                    field: "registrationState",
                })?;
            Ok(OperationStatus::Assigned(Assignment {
                assigned_hub: text(state, "assignedHub")?,
                device_id: text(state, "deviceId")?,
            }))
        }
        "failed" | "disabled" => {
            let state = value.get("registrationState").unwrap_or(value);
            let message = text(state, "errorMessage")
                .or_else(|_| text(value, "message"))
                .unwrap_or_else(|_| status.clone());
            Ok(OperationStatus::Failed { message })
        }
        _ => Err(OperationError::UnknownStatus { status }),
    }
}

/// Parses `$dps/registrations/res/{status}/?$rid={rid}&retry-after={s}`.
pub fn parse_response_topic(topic: &str) -> Option<(u16, u64, Option<u64>)> {
    let rest = topic.strip_prefix("$dps/registrations/res/")?;
    let (status, query) = rest.split_once('/')?;
    let status = status.parse().ok()?;
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut rid = None;
    let mut retry = None;
    for (key, value) in query.split('&').filter_map(|p| p.split_once('=')) {
        match key {
            "$rid" => rid = value.parse().ok(),
            "retry-after" => retry = value.parse().ok(),
            _ => {}
        }
    }
    Some((status, rid?, retry))
}

/// Registers the device and returns its assignment.
pub async fn register(config: &DpsConfig) -> Result<Assignment> {
    let id = config.registration_id.clone();
    let fail = |reason: String| AgentError::Provision {
        registration_id: id.clone(),
        reason,
    };
    let connect_err = |source: AgentError| AgentError::ProvisionConnect {
        registration_id: id.clone(),
        source: Box::new(source),
    };
    let mut options = MqttOptions::new(id.clone(), config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    let password = match &config.signer {
        Some(signer) => {
            let resource = format!("{}/registrations/{}", config.id_scope, id);
            let expiry = sas::unix_now() + 3600;
            // Signed inline: a software HMAC or a short TPM exchange, and the agent
            // component's sandbox allows no extra (blocking-pool) thread.
            sas::build_token(&resource, Some("registration"), expiry, signer.as_ref())?.token
        }
        None => String::new(),
    };
    options.set_credentials(username(&config.id_scope, &id), password);
    let tls = config
        .tls
        .client_config(&config.host)
        .map_err(connect_err)?;
    let dial_failure = dial::DialFailure::default();
    let connector = dial::tls_connector(
        config.dialer.clone(),
        &config.host,
        config.port,
        tls,
        dial_failure.clone(),
    );
    let (client, mut eventloop) = StreamEventLoop::new(
        options,
        connector,
        16,
        config.timeout.min(Duration::from_secs(30)),
        64 * 1024,
        64 * 1024,
    );
    let deadline = Instant::now() + config.timeout;
    let mut rid: u64 = 0;
    // The request to (re)send when `due` passes: register first, then poll the operation.
    let mut step = Step::Register;
    let mut due: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = tokio::time::sleep_until(deadline) => return Err(fail("timed out".into())),
            _ = tokio::time::sleep_until(due.unwrap_or(deadline)), if due.is_some() => {
                due = None;
                rid += 1;
                send_step(&client, &step, rid, &id)?;
                continue;
            }
        };
        match event {
            Err(ConnectionError::ConnectionRefused(code)) => {
                return Err(connect_err(AgentError::ConnectRefused {
                    host: config.host.clone(),
                    code: format!("{code:?}"),
                    identity_refused: matches!(
                        code,
                        rumqttc::ConnectReturnCode::BadUserNamePassword
                            | rumqttc::ConnectReturnCode::NotAuthorized
                    ),
                }));
            }
            Err(source) => {
                // The loop only sees that connecting failed: report why, if the dial said.
                let error = dial::take_failure(&dial_failure).unwrap_or(AgentError::Connect {
                    host: config.host.clone(),
                    source: Box::new(source),
                });
                return Err(connect_err(error));
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                client
                    .try_subscribe(RESPONSES, QoS::AtLeastOnce)
                    .map_err(|source| AgentError::SendRequest {
                        what: "subscribe",
                        topic: RESPONSES.into(),
                        source: Box::new(source),
                    })?;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                rid += 1;
                send_step(&client, &step, rid, &id)?;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some((status, answer_rid, retry_after)) = parse_response_topic(&publish.topic)
                else {
                    continue;
                };
                if answer_rid != rid {
                    continue; // a late answer to an earlier attempt
                }
                let wait = Duration::from_secs(retry_after.unwrap_or(2).clamp(1, 30));
                if status == 429 || status >= 500 {
                    // Throttled or busy: repeat the same step later.
                    due = Some(Instant::now() + wait);
                    continue;
                }
                if status >= 300 {
                    let body: String = String::from_utf8_lossy(&publish.payload)
                        .chars()
                        .take(200)
                        .collect();
                    return Err(fail(format!("DPS answered status {status}: {body}")));
                }
                let operation = parse_operation(&publish.payload).map_err(|source| {
                    AgentError::ProvisionAnswer {
                        registration_id: id.clone(),
                        source,
                    }
                })?;
                match operation {
                    OperationStatus::Assigning { operation_id } => {
                        step = Step::Poll(operation_id);
                        due = Some(Instant::now() + wait);
                    }
                    OperationStatus::Assigned(assignment) => {
                        let _ = client.try_disconnect();
                        return Ok(assignment);
                    }
                    OperationStatus::Failed { message } => return Err(fail(message)),
                }
            }
            Ok(_) => {}
        }
    }
}

const RESPONSES: &str = "$dps/registrations/res/#";

enum Step {
    Register,
    Poll(String),
}

fn send_step(client: &AsyncClient, step: &Step, rid: u64, registration_id: &str) -> Result<()> {
    let (topic, body) = match step {
        Step::Register => (
            format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"),
            serde_json::json!({ "registrationId": registration_id })
                .to_string()
                .into_bytes(),
        ),
        Step::Poll(operation_id) => (
            format!(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={}",
                sas::percent_encode(operation_id)
            ),
            Vec::new(),
        ),
    };
    client
        .try_publish(topic.clone(), QoS::AtLeastOnce, false, body)
        .map_err(|source| AgentError::SendRequest {
            what: "publish",
            topic,
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dps_answers() {
        assert_eq!(
            parse_operation(br#"{"operationId":"4.abc","status":"assigning"}"#).unwrap(),
            OperationStatus::Assigning {
                operation_id: "4.abc".into()
            }
        );
        assert_eq!(
            parse_operation(br#"{"operationId":"4.abc","status":"assigned","registrationState":{"assignedHub":"h.azure-devices.net","deviceId":"d1","status":"assigned"}}"#).unwrap(),
            OperationStatus::Assigned(Assignment { assigned_hub: "h.azure-devices.net".into(), device_id: "d1".into() })
        );
        assert!(matches!(
            parse_operation(br#"{"status":"failed","registrationState":{"errorMessage":"disabled"}}"#).unwrap(),
            OperationStatus::Failed { message } if message == "disabled"
        ));
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"status":"assigned"}"#,
            br#"{"status":7}"#,
        ] {
            assert!(parse_operation(bad).is_err());
        }
    }

    #[test]
    fn parses_dps_topics() {
        assert_eq!(
            parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=3"),
            Some((202, 1, Some(3)))
        );
        assert_eq!(
            parse_response_topic("$dps/registrations/res/200/?$rid=2"),
            Some((200, 2, None))
        );
        assert_eq!(
            parse_response_topic("$dps/registrations/res/x/?$rid=2"),
            None
        );
        assert_eq!(
            username("0ne1", "r"),
            "0ne1/registrations/r/api-version=2019-03-31"
        );
    }
}
