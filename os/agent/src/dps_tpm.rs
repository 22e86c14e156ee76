//! DPS registration with TPM attestation over HTTPS, following the flow of Azure's
//! iot-identity-service (`aziot-identityd` DPS client + `aziot-tpmd`):
//!
//! 1. Make sure the TPM has its RSA 2048 endorsement key (EK) persisted at [`EK_HANDLE`]
//!    (TCG default template) and an RSA 2048 storage root key (SRK) at [`tpm::SRK_HANDLE`].
//! 2. `PUT https://{dps}/{idScope}/registrations/{registrationId}/register?api-version=...`
//!    with both public areas (base64 `TPM2B_PUBLIC`). DPS answers 401 with
//!    `authenticationKey`: a credential for the EK + a duplication blob of an HMAC key.
//! 3. TPM2_ActivateCredential(SRK, EK) — the EK authorized by a policy session holding
//!    PolicySecret(endorsement hierarchy) — recovers the inner wrapping key; TPM2_Import under
//!    the SRK with it turns the blob into a private area the TPM can load; the loaded HMAC key
//!    is persisted at the caller's handle. The key never exists outside the TPM on this side:
//!    the agent only ever handles blobs encrypted to the TPM's keys, and the imported object
//!    (`sign`, empty auth policy) can be neither unsealed nor duplicated.
//! 4. SAS tokens (`skn=registration`) signed inside the TPM authorize the second PUT (202 with an
//!    operation id) and the status polls, until DPS reports the assignment.
//!
//! Everything here is blocking (TPM and a small HTTPS/1.1 client on rustls); from async code use
//! [`register_with_tpm_async`]. Afterwards, connect to the assigned hub with
//! [`crate::tpm::TpmHmacSigner`] on the same handle (returned in [`TpmRegistration`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tss_esapi::abstraction::ek;
use tss_esapi::abstraction::AsymmetricAlgorithmSelection;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, EncryptedSecret, IdObject, Private, Public, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;

use crate::dps::Assignment;
use crate::dps_http::{self, describe, operation_step, poll_wait, Answer, OperationStep, Response};
use crate::error::{AgentError, Result};
use crate::sas::{build_token, unix_now};
use crate::tls::TlsSettings;
use crate::tpm::{self, find_persistent, persist, tpm_err, TpmHmacSigner};

/// Where the endorsement key is persisted (TCG convention, as `aziot-tpmd` expects).
pub const EK_HANDLE: u32 = 0x8101_0001;

/// Largest DPS answer accepted.
const MAX_RESPONSE: usize = 256 * 1024;
/// Lifetime of the registration SAS tokens.
const TOKEN_TTL: u64 = 300;

/// How to reach DPS over HTTPS and which TPM registers.
#[derive(Debug, Clone)]
pub struct TpmDpsConfig {
    /// DPS host name (e.g. `global.azure-devices-provisioning.net`); TLS name and `Host`.
    pub host: String,
    /// HTTPS port (443).
    pub port: u16,
    /// ID scope of the DPS instance.
    pub id_scope: String,
    /// Registration id of the individual TPM enrollment.
    pub registration_id: String,
    /// TCTI of the TPM (e.g. `swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`).
    pub tcti: String,
    /// Persistent handle the imported HMAC key is stored at (replaced if occupied).
    pub key_handle: u32,
    /// Trust anchor for DPS's certificate.
    pub tls: TlsSettings,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The outcome of a TPM registration.
#[derive(Debug)]
pub struct TpmRegistration {
    /// Where DPS assigned the device.
    pub assignment: Assignment,
    /// Signs SAS tokens with the imported key (persisted at [`TpmDpsConfig::key_handle`]).
    pub signer: Arc<TpmHmacSigner>,
}

/// The device's public TPM identity, as DPS wants it (`TPM2B_PUBLIC` bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublicKeys {
    /// Endorsement key public area (what an enrollment registers).
    pub endorsement_key: Vec<u8>,
    /// Storage root key public area.
    pub storage_root_key: Vec<u8>,
}

/// Returns the EK at [`EK_HANDLE`], creating (TCG default RSA 2048 template) and persisting
/// it if the TPM has none.
fn ensure_ek(context: &mut Context, tcti: &str) -> Result<KeyHandle> {
    if let Some(object) = find_persistent(context, EK_HANDLE, tcti)? {
        return Ok(object.into());
    }
    let created = context
        .execute_with_nullauth_session(|ctx| {
            ek::create_ek_object_2(
                ctx,
                AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
                None,
            )
        })
        .map_err(tpm_err("create EK", tcti))?;
    persist(context, created, EK_HANDLE, tcti)
}

/// Returns the SRK at [`tpm::SRK_HANDLE`] (created as RSA 2048 by [`tpm::ensure_srk`] if
/// absent). An SRK of another type (e.g. ECC) is refused: DPS can only wrap keys to RSA SRKs.
fn ensure_rsa_srk(context: &mut Context, tcti: &str) -> Result<KeyHandle> {
    let srk = tpm::ensure_srk(context, tcti)?;
    let (public, _, _) = context
        .read_public(srk)
        .map_err(tpm_err("read SRK", tcti))?;
    if !matches!(public, Public::Rsa { .. }) {
        return Err(AgentError::TpmKey {
            handle: tpm::SRK_HANDLE,
            reason: "the SRK is not an RSA key; DPS TPM attestation needs an RSA 2048 SRK".into(),
        });
    }
    Ok(srk)
}

fn tpm2b_public(context: &mut Context, key: KeyHandle, tcti: &str) -> Result<Vec<u8>> {
    let (public, _, _) = context
        .read_public(key)
        .map_err(tpm_err("read public area", tcti))?;
    let tpmt = public
        .marshall()
        .map_err(tpm_err("marshal public area", tcti))?;
    Ok(sized(&tpmt))
}

fn sized(bytes: &[u8]) -> Vec<u8> {
    // TPM public areas are a few hundred bytes.
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Creates (if needed) and reads the EK and RSA SRK: what a TPM enrollment registers
/// (`endorsement_key`) and what registration sends.
pub fn read_public_keys(tcti: &str) -> Result<TpmPublicKeys> {
    let mut context = tpm::open_context(tcti)?;
    let ek = ensure_ek(&mut context, tcti)?;
    let srk = ensure_rsa_srk(&mut context, tcti)?;
    Ok(TpmPublicKeys {
        endorsement_key: tpm2b_public(&mut context, ek, tcti)?,
        storage_root_key: tpm2b_public(&mut context, srk, tcti)?,
    })
}

/// The parts of DPS's `authenticationKey` blob (see `aziot-tpmd`'s import order).
struct AuthenticationKey {
    credential_blob: IdObject,
    secret: EncryptedSecret,
    duplicate: Private,
    seed: EncryptedSecret,
    public: Public,
}

fn parse_authentication_key(blob: &[u8], key_handle: u32, tcti: &str) -> Result<AuthenticationKey> {
    let bad = |reason: String| AgentError::TpmKey {
        handle: key_handle,
        reason: format!("DPS authenticationKey: {reason}"),
    };
    let mut rest = blob;
    let mut next = |what: &str| -> Result<Vec<u8>> {
        if rest.len() < 2 {
            return Err(bad(format!("truncated before {what}")));
        }
        let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = rest
            .get(2..2 + size)
            .ok_or_else(|| bad(format!("truncated in {what}")))?;
        rest = &rest[2 + size..];
        Ok(body.to_vec())
    };
    let credential_blob = IdObject::try_from(next("TPM2B_ID_OBJECT")?)
        .map_err(tpm_err("wrap credential blob", tcti))?;
    let secret = EncryptedSecret::try_from(next("TPM2B_ENCRYPTED_SECRET")?)
        .map_err(tpm_err("wrap credential secret", tcti))?;
    let duplicate =
        Private::try_from(next("TPM2B_PRIVATE")?).map_err(tpm_err("wrap duplicate", tcti))?;
    let seed = EncryptedSecret::try_from(next("TPM2B_ENCRYPTED_SECRET (seed)")?)
        .map_err(tpm_err("wrap import seed", tcti))?;
    let public = Public::unmarshall(&next("TPM2B_PUBLIC")?)
        .map_err(tpm_err("parse key public area", tcti))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the key", rest.len())));
    }
    Ok(AuthenticationKey {
        credential_blob,
        secret,
        duplicate,
        seed,
        public,
    })
}

/// ActivateCredential + Import + Load + persist: puts DPS's HMAC key into the TPM at
/// `key_handle` (replacing what was there).
pub fn import_authentication_key(tcti: &str, key_handle: u32, blob: &[u8]) -> Result<()> {
    let parts = parse_authentication_key(blob, key_handle, tcti)?;
    let mut context = tpm::open_context(tcti)?;
    let ek = ensure_ek(&mut context, tcti)?;
    let srk = ensure_rsa_srk(&mut context, tcti)?;

    // The EK's policy is PolicySecret(TPM_RH_ENDORSEMENT): satisfy it in a policy session.
    let session = context
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(tpm_err("start policy session", tcti))?
        .ok_or_else(|| AgentError::TpmKey {
            handle: EK_HANDLE,
            reason: "the TPM returned no policy session".into(),
        })?;
    let activated = PolicySession::try_from(session)
        .map_err(tpm_err("use policy session", tcti))
        .and_then(|policy| {
            context
                .execute_with_nullauth_session(|ctx| {
                    ctx.policy_secret(
                        policy,
                        AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(tpm_err("PolicySecret(endorsement)", tcti))
        })
        .and_then(|_| {
            context
                .execute_with_sessions((Some(AuthSession::Password), Some(session), None), |ctx| {
                    ctx.activate_credential(srk, ek, parts.credential_blob, parts.secret)
                })
                .map_err(tpm_err("ActivateCredential", tcti))
        });
    let _ = context.flush_context(SessionHandle::from(session).into());
    let inner_key = activated?;

    let encryption_key =
        Data::try_from(inner_key.value().to_vec()).map_err(tpm_err("wrap inner key", tcti))?;
    let public = parts.public;
    let private = context
        .execute_with_nullauth_session(|ctx| {
            ctx.import(
                srk.into(),
                Some(encryption_key),
                public.clone(),
                parts.duplicate,
                parts.seed,
                SymmetricDefinitionObject::AES_128_CFB,
            )
        })
        .map_err(tpm_err("Import", tcti))?;
    let loaded = context
        .execute_with_nullauth_session(|ctx| ctx.load(srk, private, public))
        .map_err(tpm_err("load imported key", tcti))?;
    if let Some(existing) = find_persistent(&mut context, key_handle, tcti)? {
        let target = tpm::persistent(key_handle, tcti)?;
        let removed = context
            .execute_with_nullauth_session(|ctx| {
                ctx.evict_control(Provision::Owner, existing, target)
            })
            .map_err(tpm_err("remove previous key", tcti));
        if let Err(err) = removed {
            let _ = context.flush_context(loaded.into());
            return Err(err);
        }
    }
    persist(&mut context, loaded, key_handle, tcti).map(|_| ())
}

/// Registers with DPS using TPM attestation; blocking.
pub fn register_with_tpm(config: &TpmDpsConfig) -> Result<TpmRegistration> {
    let deadline = Instant::now() + config.timeout;
    let id = &config.registration_id;
    let fail = |reason: String| AgentError::Provision {
        registration_id: id.clone(),
        reason,
    };
    let keys = read_public_keys(&config.tcti)?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = json!({
        "registrationId": id,
        "tpm": {
            "endorsementKey": b64(&keys.endorsement_key),
            "storageRootKey": b64(&keys.storage_root_key),
        },
    });
    let path = dps_http::register_path(&config.id_scope, id);
    let client = HttpsClient::new(config)?;

    // Round 1: no authorization -> 401 with the challenge.
    let Response {
        status,
        body: answer,
        ..
    } = client.request("PUT", &path, None, Some(&body))?;
    if status != 401 {
        return Err(fail(format!(
            "expected the TPM challenge (401), got {status}: {}",
            describe(&answer)
        )));
    }
    let challenge = answer
        .get("authenticationKey")
        .and_then(Value::as_str)
        .ok_or_else(|| fail(format!("DPS refused the TPM: {}", describe(&answer))))?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(challenge)
        .map_err(|source| AgentError::DecodeKey {
            identity: format!("DPS authenticationKey for {id}"),
            source,
        })?;
    import_authentication_key(&config.tcti, config.key_handle, &blob)?;
    let signer = Arc::new(TpmHmacSigner::open(&config.tcti, config.key_handle)?);

    // Round 2: SAS signed in the TPM -> 202 + operation.
    let resource = format!("{}/registrations/{id}", config.id_scope);
    let authorization = || -> Result<String> {
        Ok(build_token(
            &resource,
            Some("registration"),
            unix_now() + TOKEN_TTL,
            signer.as_ref(),
        )?
        .token)
    };
    let mut answer = client.request("PUT", &path, Some(&authorization()?), Some(&body))?;
    let mut request = "registration with the TPM-signed token";
    let mut poll = 0u32;
    loop {
        let (operation_id, retry_after) = match operation_step(id, request, answer)? {
            OperationStep::Assigned(assignment) => {
                return Ok(TpmRegistration { assignment, signer })
            }
            OperationStep::Poll {
                operation_id,
                retry_after,
            } => (operation_id, retry_after),
        };
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "not assigned within {} s",
                config.timeout.as_secs()
            )));
        }
        std::thread::sleep(poll_wait(poll, retry_after));
        let status_path = dps_http::operation_path(&config.id_scope, id, &operation_id);
        answer = client.request("GET", &status_path, Some(&authorization()?), None)?;
        request = "operation status";
        poll = poll.saturating_add(1);
    }
}

/// [`register_with_tpm`] on a blocking thread.
pub async fn register_with_tpm_async(config: TpmDpsConfig) -> Result<TpmRegistration> {
    let id = config.registration_id.clone();
    tokio::task::spawn_blocking(move || register_with_tpm(&config))
        .await
        .unwrap_or_else(|_| {
            Err(AgentError::Provision {
                registration_id: id,
                reason: "the registration thread stopped unexpectedly".into(),
            })
        })
}

/// A minimal HTTPS/1.1 client (one request per connection) for DPS's JSON API.
struct HttpsClient<'a> {
    config: &'a TpmDpsConfig,
    tls: Arc<rustls::ClientConfig>,
}

impl<'a> HttpsClient<'a> {
    fn new(config: &'a TpmDpsConfig) -> Result<Self> {
        Ok(Self {
            tls: config.tls.client_config(&config.host)?,
            config,
        })
    }

    fn transport(&self, what: &str, err: impl std::fmt::Display) -> AgentError {
        AgentError::Provision {
            registration_id: self.config.registration_id.clone(),
            reason: format!(
                "HTTPS {what} with {}:{}: {err}",
                self.config.host, self.config.port
            ),
        }
    }

    /// Sends one request; returns the status and the JSON body (`null` when empty).
    fn request(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Response> {
        let host = &self.config.host;
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| self.transport("server name", e))?;
        let connection = rustls::ClientConnection::new(self.tls.clone(), server_name)
            .map_err(|e| self.transport("TLS setup", e))?;
        let tcp = TcpStream::connect((host.as_str(), self.config.port))
            .map_err(|e| self.transport("connect", e))?;
        let io_timeout = Some(self.config.timeout.max(Duration::from_secs(1)));
        tcp.set_read_timeout(io_timeout)
            .and_then(|()| tcp.set_write_timeout(io_timeout))
            .map_err(|e| self.transport("socket setup", e))?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let request = dps_http::request_text(
            &self.config.host,
            self.config.port,
            method,
            path,
            authorization,
            body,
        );
        stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| self.transport("send", e))?;
        let mut answer = Answer::new(MAX_RESPONSE);
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_malformed_authentication_keys() {
        assert!(parse_authentication_key(&[], 0x8100_0100, "t").is_err());
        assert!(parse_authentication_key(&[0, 5, 1], 0x8100_0100, "t").is_err());
        // Five empty structures: an empty TPMT_PUBLIC cannot be unmarshalled.
        assert!(parse_authentication_key(&[0; 10], 0x8100_0100, "t").is_err());
    }
}
