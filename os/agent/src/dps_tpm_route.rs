//! DPS registration with TPM attestation from inside the agent's sandbox: the TPM through the
//! `tpm` route ([`crate::tpm_commands`] over [`TpmRoute`]), DPS over HTTPS on a connection the
//! [`Dialer`] makes (the `net` route), TLS by the agent. The same three steps as the host-side
//! reference [`crate::dps_tpm::register_with_tpm`]:
//!
//! 1. the EK and SRK (created and persisted when absent) go to
//!    `PUT /{idScope}/registrations/{registrationId}/register`; an enrolled EK gets 401 with
//!    `authenticationKey`;
//! 2. that key is activated and imported into the TPM and persisted at the key handle;
//! 3. the same PUT with a SAS token (`skn=registration`) signed by it in the TPM answers 202
//!    with an operation, polled until DPS reports the assignment.
//!
//! Every answer is bounded ([`MAX_RESPONSE`]) and the whole registration by the caller's
//! timeout. Afterwards the device connects to the assigned hub with the same key
//! ([`TpmRouteSigner`] on the key handle).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dial::{self, Dialer};
use crate::dps::Assignment;
use crate::dps_http::{self, describe, operation_step, poll_wait, Answer, OperationStep, Response};
use crate::error::{AgentError, Result};
use crate::sas::{build_token, unix_now};
use crate::tls::TlsSettings;
use crate::tpm_commands::{self, EK_HANDLE};
use crate::tpm_route::{TpmRoute, TpmRouteSigner};

/// Largest DPS answer accepted (headers and body).
pub const MAX_RESPONSE: usize = 64 * 1024;
/// Lifetime of the registration SAS tokens.
const TOKEN_TTL: u64 = 300;

/// Told each step of a registration as it is reached (the component logs them: a
/// registration takes seconds on a small device, and a user watching it should see where).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// How to reach DPS and the TPM, and who registers.
#[derive(Clone)]
pub struct TpmRouteDpsConfig {
    /// DPS host name: dialed, TLS name and `Host`.
    pub host: String,
    /// DPS's HTTPS port (the plan's `cloud.dps.https_port`).
    pub port: u16,
    /// ID scope of the DPS instance.
    pub id_scope: String,
    /// Registration id of the individual TPM enrollment.
    pub registration_id: String,
    /// Persistent handle DPS's key is stored at (replaced if occupied).
    pub key_handle: u32,
    /// Trust anchors for DPS's certificate.
    pub tls: TlsSettings,
    /// Makes the TCP connections (the `net` route).
    pub dialer: Arc<dyn Dialer>,
    /// The TPM (the `tpm` route).
    pub tpm: Arc<TpmRoute>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Told each step as it is reached.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for TpmRouteDpsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmRouteDpsConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("key_handle", &self.key_handle)
            .finish_non_exhaustive()
    }
}

/// Registers with DPS by TPM attestation; the imported key is at
/// [`TpmRouteDpsConfig::key_handle`] afterwards.
pub async fn register(config: &TpmRouteDpsConfig) -> Result<Assignment> {
    match tokio::time::timeout(config.timeout, register_within(config)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(AgentError::Provision {
            registration_id: config.registration_id.clone(),
            reason: format!("not assigned within {} s", config.timeout.as_secs()),
        }),
    }
}

async fn register_within(config: &TpmRouteDpsConfig) -> Result<Assignment> {
    let id = &config.registration_id;
    let fail = |reason: String| AgentError::Provision {
        registration_id: id.clone(),
        reason,
    };
    let progress = |step: &str| {
        if let Some(progress) = &config.progress {
            progress(step);
        }
    };
    let keys =
        tpm_commands::ensure_keys(&mut &*config.tpm).map_err(|source| AgentError::TpmRoute {
            step: "reading (or creating) the endorsement and storage root keys",
            handle: EK_HANDLE,
            source,
        })?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = json!({
        "registrationId": id,
        "tpm": {
            "endorsementKey": b64(&keys.endorsement_key),
            "storageRootKey": b64(&keys.storage_root_key),
        },
    });
    let path = dps_http::register_path(&config.id_scope, id);
    let client = HttpsClient {
        config,
        tls: config.tls.client_config(&config.host)?,
    };

    // Round 1: no authorization -> 401 with the challenge.
    progress(&format!(
        "DPS: registering {id} at {}:{} with the TPM's endorsement key",
        config.host, config.port
    ));
    let Response {
        status,
        body: answer,
        ..
    } = client.request("PUT", &path, None, Some(&body)).await?;
    if status != 401 {
        return Err(fail(format!(
            "expected the TPM challenge (401), got {status}: {}",
            describe(&answer)
        )));
    }
    let challenge = answer
        .get("authenticationKey")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            fail(format!(
                "DPS refused the TPM's endorsement key: {}",
                describe(&answer)
            ))
        })?;
    progress("DPS: challenge received; activating the credential with the TPM's endorsement key");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(challenge)
        .map_err(|source| AgentError::DecodeKey {
            identity: format!("DPS authenticationKey for {id}"),
            source,
        })?;
    tpm_commands::import_authentication_key(&mut &*config.tpm, config.key_handle, &blob).map_err(
        |source| AgentError::TpmRoute {
            step: "importing DPS's authentication key",
            handle: config.key_handle,
            source,
        },
    )?;
    let signer = TpmRouteSigner::new(config.tpm.clone(), config.key_handle);
    progress(&format!(
        "DPS: credential activated, DPS's key imported into the TPM at {:#010x}; registering with a token it signs",
        config.key_handle
    ));

    // Round 2: SAS signed in the TPM -> 202 + operation, polled until assigned.
    let resource = format!("{}/registrations/{id}", config.id_scope);
    let authorization = || -> Result<String> {
        Ok(build_token(
            &resource,
            Some("registration"),
            unix_now() + TOKEN_TTL,
            &signer,
        )?
        .token)
    };
    let mut answer = client
        .request("PUT", &path, Some(&authorization()?), Some(&body))
        .await?;
    let mut request = "registration with the TPM-signed token";
    let mut poll = 0u32;
    loop {
        let (operation_id, retry_after) = match operation_step(id, request, answer)? {
            OperationStep::Assigned(assignment) => return Ok(assignment),
            OperationStep::Poll {
                operation_id,
                retry_after,
            } => (operation_id, retry_after),
        };
        let wait = poll_wait(poll, retry_after);
        progress(&format!(
            "DPS: assigning (operation {operation_id}); asking again in {} ms",
            wait.as_millis()
        ));
        tokio::time::sleep(wait).await;
        let status_path = dps_http::operation_path(&config.id_scope, id, &operation_id);
        answer = client
            .request("GET", &status_path, Some(&authorization()?), None)
            .await?;
        request = "operation status";
        poll = poll.saturating_add(1);
    }
}

/// HTTPS/1.1, one request per connection, over connections the dialer makes.
struct HttpsClient<'a> {
    config: &'a TpmRouteDpsConfig,
    tls: Arc<rustls::ClientConfig>,
}

impl HttpsClient<'_> {
    fn transport(&self, what: &str, err: impl std::fmt::Display) -> AgentError {
        AgentError::Provision {
            registration_id: self.config.registration_id.clone(),
            reason: format!(
                "HTTPS {what} with {}:{}: {err}",
                self.config.host, self.config.port
            ),
        }
    }

    /// Sends one request; returns the complete answer.
    async fn request(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Response> {
        let config = self.config;
        let mut stream = dial::connect_tls(
            Some(config.dialer.clone()),
            &config.host,
            config.port,
            self.tls.clone(),
        )
        .await
        .map_err(|source| AgentError::ProvisionConnect {
            registration_id: config.registration_id.clone(),
            source: Box::new(source),
        })?;
        let request =
            dps_http::request_text(&config.host, config.port, method, path, authorization, body);
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| self.transport("send", e))?;
        stream
            .flush()
            .await
            .map_err(|e| self.transport("send", e))?;
        let mut answer = Answer::new(MAX_RESPONSE);
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    if answer
                        .push(&chunk[..n])
                        .map_err(|e| self.transport("receive", e))?
                    {
                        break;
                    }
                }
                // Servers may close without TLS close_notify; a complete answer is enough.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(self.transport("receive", e)),
            }
        }
        answer.finish().map_err(|e| self.transport("answer", e))
    }
}
