//! The few TPM 2.0 commands the agent needs in component mode, marshalled by hand: in its
//! sandbox the TPM is only a `tpm` route (write one raw command, read its response), which no
//! tss-esapi TCTI can carry (decision 0082).
//!
//! - SAS signing: `TPM2_HMAC` with the persisted device key ([`hmac()`]).
//! - DPS TPM attestation, following [`crate::dps_tpm`] (the host-side reference on
//!   tss-esapi): the EK (TCG default RSA 2048 template, endorsement hierarchy) and the RSA 2048
//!   SRK (owner hierarchy) are read, or created and persisted when absent ([`ensure_keys`]);
//!   DPS's `authenticationKey` is activated and imported under the SRK and the HMAC key
//!   persisted at the caller's handle ([`import_authentication_key`]).
//!
//! Every command is a plain function over a [`TpmTransport`]. Authorisation is a password
//! session (`TPM_RS_PW`, empty password) except for the EK in `TPM2_ActivateCredential`, which
//! needs a policy session holding `PolicySecret(TPM_RH_ENDORSEMENT)`. Every transient object
//! and session is flushed, on error paths too (swtpm and small TPMs have three slots and no
//! resource manager).
//!
//! Responses are untrusted input: the header size must be the response's length, the response
//! code must be success, and every field's length is checked against what is left
//! ([`parse_response`], fuzzed in `os/agent/fuzz`). The wire format itself (cursor, `TPM2B`
//! buffers, algorithm ids, the RSA storage key parser) is `testudo_tpm_wire`, shared with the
//! DPS emulator that reads what this code sends.

use testudo_tpm_wire::{
    self as wire, put_u16, put_u32, ALG_AES, ALG_CFB, ALG_ECDSA, ALG_NULL, ALG_RSA, ALG_SHA256,
};

/// What a transport's failure is (a scheme error through the route, an I/O error in tests).
pub type TransportError = Box<dyn std::error::Error + Send + Sync>;

/// Sends one raw TPM 2.0 command and returns its whole response.
pub trait TpmTransport {
    /// Exchanges `command` for the TPM's response.
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;
}

/// Where the endorsement key is persisted (as [`crate::dps_tpm::EK_HANDLE`]).
pub const EK_HANDLE: u32 = crate::dps_tpm::EK_HANDLE;
/// Where the storage root key is persisted (as [`crate::tpm::SRK_HANDLE`]).
pub const SRK_HANDLE: u32 = crate::tpm::SRK_HANDLE;
/// Largest TPM 2.0 command or response (the `tpm` driver's limit).
pub const MAX_MESSAGE: usize = 4096;
/// Largest `TPM2B_MAX_BUFFER` (`MAX_DIGEST_BUFFER` on every TPM in practice).
pub const MAX_HMAC_INPUT: usize = 1024;
/// Size of the caller nonces sent (SHA-256 digest size).
const NONCE_SIZE: usize = 32;

const HEADER: usize = 10;
const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_RS_PW: u32 = 0x4000_0009;
/// `TPM_RH_OWNER`.
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
const TPM_RH_NULL: u32 = 0x4000_0007;
/// `TPM_RH_ENDORSEMENT`.
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;
const TPM_SE_POLICY: u8 = 0x01;
/// `continueSession`: the session outlives the command (it is flushed explicitly).
const CONTINUE_SESSION: u8 = 0x01;

const CC_EVICT_CONTROL: u32 = 0x0120;
const CC_CREATE_PRIMARY: u32 = 0x0131;
const CC_ACTIVATE_CREDENTIAL: u32 = 0x0147;
const CC_POLICY_SECRET: u32 = 0x0151;
const CC_HMAC: u32 = 0x0155;
const CC_IMPORT: u32 = 0x0156;
const CC_LOAD: u32 = 0x0157;
const CC_FLUSH_CONTEXT: u32 = 0x0165;
const CC_READ_PUBLIC: u32 = 0x0173;
const CC_SIGN: u32 = 0x015D;
/// `TPM_ST_HASHCHECK`: the tag of the (null) ticket an unrestricted key signs with.
const TPM_ST_HASHCHECK: u16 = 0x8024;
const CC_START_AUTH_SESSION: u32 = 0x0176;

/// TCG EK policy A (SHA-256): `PolicySecret(TPM_RH_ENDORSEMENT)`.
const EK_POLICY_A: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];
/// EK: fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt.
const EK_ATTRIBUTES: u32 = 0x0003_00B2;
/// SRK: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA | restricted |
/// decrypt.
const SRK_ATTRIBUTES: u32 = 0x0003_0472;

/// Why a TPM command failed. `command` is the TPM 2.0 command name (`TPM2_Import`, ...).
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The command could not be sent or its response not received.
    #[error("exchanging {command} with the TPM failed")]
    Exchange {
        /// The command.
        command: &'static str,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// The command cannot be marshalled (a field or the whole command is too large).
    #[error("marshalling {command} failed: {detail}")]
    Marshal {
        /// The command.
        command: &'static str,
        /// What does not fit.
        detail: String,
    },
    /// The TPM answered with an error response code.
    #[error("the TPM answered {command} with response code {code:#x}")]
    ResponseCode {
        /// The command.
        command: &'static str,
        /// The TPM response code.
        code: u32,
    },
    /// The response is not what the command returns (truncated, lying sizes, trailing bytes).
    #[error("parsing the TPM's response to {command} failed: {detail}")]
    ParseResponse {
        /// The command.
        command: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A key the TPM holds is not the RSA 2048 storage key DPS TPM attestation needs (EK and
    /// SRK).
    #[error("the key at {handle:#010x} is not an RSA 2048 restricted decryption key DPS can wrap secrets to")]
    UnsuitableKey {
        /// Its persistent handle.
        handle: u32,
        /// What the shared parser refused.
        #[source]
        source: wire::WireError,
    },
    /// A key persisted a moment ago cannot be read back.
    #[error("the key persisted at {handle:#010x} is not there")]
    PersistedKeyMissing {
        /// Its persistent handle.
        handle: u32,
    },
    /// DPS's `authenticationKey` is not the five structures it should be.
    #[error("parsing DPS's authenticationKey failed at {part}: {detail}")]
    ParseAuthenticationKey {
        /// The structure being read.
        part: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No random bytes for a nonce.
    #[error("drawing a {NONCE_SIZE}-byte nonce for {command} failed")]
    Nonce {
        /// The command.
        command: &'static str,
    },
}

/// How a command is authorised, one entry per handle that needs it.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    /// `TPM_RS_PW` with an empty password.
    Password,
    /// A policy session, with a fresh caller nonce.
    Policy { session: u32, nonce: &'a [u8] },
}

/// Appends a `TPM2B_*`: a `u16` size, then the bytes.
fn put_sized(out: &mut Vec<u8>, command: &'static str, bytes: &[u8]) -> Result<(), TpmError> {
    wire::put_sized(out, "TPM2B", bytes).map_err(|error| TpmError::Marshal {
        command,
        detail: error.to_string(),
    })
}

/// A whole command: header, handles, authorisation area (when `sessions` is not empty),
/// parameters.
fn marshal(
    command: &'static str,
    code: u32,
    handles: &[u32],
    sessions: &[Auth<'_>],
    parameters: &[u8],
) -> Result<Vec<u8>, TpmError> {
    let mut out = Vec::with_capacity(HEADER + 64 + parameters.len());
    let tag = if sessions.is_empty() {
        TPM_ST_NO_SESSIONS
    } else {
        TPM_ST_SESSIONS
    };
    put_u16(&mut out, tag);
    put_u32(&mut out, 0); // commandSize, set below
    put_u32(&mut out, code);
    for handle in handles {
        put_u32(&mut out, *handle);
    }
    if !sessions.is_empty() {
        let mut area = Vec::new();
        for session in sessions {
            match session {
                Auth::Password => {
                    put_u32(&mut area, TPM_RS_PW);
                    put_sized(&mut area, command, &[])?; // nonceCaller
                    area.push(0); // sessionAttributes
                    put_sized(&mut area, command, &[])?; // the (empty) password
                }
                Auth::Policy { session, nonce } => {
                    put_u32(&mut area, *session);
                    put_sized(&mut area, command, nonce)?;
                    area.push(CONTINUE_SESSION);
                    put_sized(&mut area, command, &[])?; // no HMAC in a plain policy session
                }
            }
        }
        put_u32(&mut out, area.len() as u32);
        out.extend_from_slice(&area);
    }
    out.extend_from_slice(parameters);
    if out.len() > MAX_MESSAGE {
        return Err(TpmError::Marshal {
            command,
            detail: format!("{} bytes, more than {MAX_MESSAGE}", out.len()),
        });
    }
    let size = (out.len() as u32).to_be_bytes();
    out[2..6].copy_from_slice(&size);
    Ok(out)
}

/// A cursor over the untrusted bytes of one response (the shared [`wire::Reader`], its
/// errors naming the command).
#[derive(Debug)]
pub struct Reader<'a> {
    command: &'static str,
    wire: wire::Reader<'a>,
}

impl<'a> Reader<'a> {
    fn new(command: &'static str, bytes: &'a [u8]) -> Self {
        Self {
            command,
            wire: wire::Reader::new(bytes),
        }
    }

    fn fail(&self, detail: String) -> TpmError {
        TpmError::ParseResponse {
            command: self.command,
            detail,
        }
    }

    fn checked<T>(&self, read: Result<T, wire::WireError>) -> Result<T, TpmError> {
        read.map_err(|error| self.fail(error.to_string()))
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TpmError> {
        let read = self.wire.take(n, what);
        self.checked(read)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TpmError> {
        let read = self.wire.u16(what);
        self.checked(read)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, TpmError> {
        let read = self.wire.u32(what);
        self.checked(read)
    }

    /// A `TPM2B_*`'s bytes (without the size).
    fn sized(&mut self, what: &'static str) -> Result<&'a [u8], TpmError> {
        let read = self.wire.sized(what);
        self.checked(read)
    }

    /// A `TPM2B_*` with its size prefix, as DPS wants public areas.
    fn sized_with_prefix(&mut self, what: &'static str) -> Result<&'a [u8], TpmError> {
        let read = self.wire.sized_with_prefix(what);
        self.checked(read)
    }

    /// Refuses bytes left over.
    fn end(&self) -> Result<(), TpmError> {
        self.checked(self.wire.end("the parameters"))
    }
}

/// A successful response: its handles and a reader over its parameters (the response
/// authorisation area, when there is one, is past the parameters and not read).
#[derive(Debug)]
pub struct Response<'a> {
    /// The handles the command returns.
    pub handles: Vec<u32>,
    /// The parameters.
    pub parameters: Reader<'a>,
}

/// Checks a response's header (size = length, a known tag, success) and splits off
/// `handle_count` handles and the parameters.
pub fn parse_response<'a>(
    command: &'static str,
    response: &'a [u8],
    handle_count: usize,
) -> Result<Response<'a>, TpmError> {
    let mut reader = Reader::new(command, response);
    let tag = reader.u16("tag")?;
    let size = reader.u32("responseSize")?;
    if size as usize != response.len() {
        return Err(reader.fail(format!(
            "a response of {} bytes declaring {size}",
            response.len()
        )));
    }
    let code = reader.u32("responseCode")?;
    if code != 0 {
        return Err(TpmError::ResponseCode { command, code });
    }
    let mut handles = Vec::with_capacity(handle_count);
    for _ in 0..handle_count {
        handles.push(reader.u32("handle")?);
    }
    let parameters = match tag {
        TPM_ST_NO_SESSIONS => reader.wire.rest(),
        TPM_ST_SESSIONS => {
            let parameter_size = reader.u32("parameterSize")? as usize;
            reader.take(parameter_size, "parameters")?
        }
        other => return Err(reader.fail(format!("tag {other:#06x}"))),
    };
    Ok(Response {
        handles,
        parameters: Reader::new(command, parameters),
    })
}

/// Sends `command` and checks the response's header.
fn exchange(
    tpm: &mut impl TpmTransport,
    name: &'static str,
    command: &[u8],
) -> Result<Vec<u8>, TpmError> {
    let response = tpm.transact(command).map_err(|source| TpmError::Exchange {
        command: name,
        source,
    })?;
    if response.len() > MAX_MESSAGE {
        return Err(TpmError::ParseResponse {
            command: name,
            detail: format!("{} bytes, more than {MAX_MESSAGE}", response.len()),
        });
    }
    Ok(response)
}

/// Whether `code` is `TPM_RC_HANDLE` for a handle (format 1, error 0x0B, handle not
/// parameter): what the TPM answers for a persistent handle holding nothing.
fn is_handle_error(code: u32) -> bool {
    code & 0x080 != 0 && code & 0x040 == 0 && code & 0x03F == 0x00B
}

/// The `TPM2_HMAC` command for `message` with the key at `key_handle`.
pub fn hmac_command(key_handle: u32, message: &[u8]) -> Result<Vec<u8>, TpmError> {
    const NAME: &str = "TPM2_HMAC";
    if message.len() > MAX_HMAC_INPUT {
        return Err(TpmError::Marshal {
            command: NAME,
            detail: format!(
                "a {}-byte message is longer than one TPM2_HMAC takes ({MAX_HMAC_INPUT})",
                message.len()
            ),
        });
    }
    let mut parameters = Vec::with_capacity(message.len() + 4);
    put_sized(&mut parameters, NAME, message)?;
    put_u16(&mut parameters, ALG_SHA256);
    marshal(NAME, CC_HMAC, &[key_handle], &[Auth::Password], &parameters)
}

/// Parses a `TPM2_HMAC` response: the 32-byte HMAC.
pub fn parse_hmac_response(response: &[u8]) -> Result<[u8; 32], TpmError> {
    let mut parsed = parse_response("TPM2_HMAC", response, 0)?;
    let digest = parsed.parameters.sized("outHMAC")?;
    parsed.parameters.end()?;
    <[u8; 32]>::try_from(digest).map_err(|_| TpmError::ParseResponse {
        command: "TPM2_HMAC",
        detail: format!("a {}-byte HMAC (SHA-256 has 32)", digest.len()),
    })
}

/// HMAC-SHA256 of `message` with the key persisted at `key_handle`.
pub fn hmac(
    tpm: &mut impl TpmTransport,
    key_handle: u32,
    message: &[u8],
) -> Result<[u8; 32], TpmError> {
    let command = hmac_command(key_handle, message)?;
    parse_hmac_response(&exchange(tpm, "TPM2_HMAC", &command)?)
}

/// The `TPM2_Sign` command: an ECDSA (SHA-256) signature of `digest` by the unrestricted
/// signing key at `key_handle` (password session, empty password; the null ticket).
pub fn sign_ecdsa_command(key_handle: u32, digest: &[u8; 32]) -> Result<Vec<u8>, TpmError> {
    const NAME: &str = "TPM2_Sign";
    let mut parameters = Vec::with_capacity(48);
    put_sized(&mut parameters, NAME, digest)?;
    put_u16(&mut parameters, ALG_ECDSA); // inScheme
    put_u16(&mut parameters, ALG_SHA256);
    put_u16(&mut parameters, TPM_ST_HASHCHECK); // validation: a null ticket
    put_u32(&mut parameters, TPM_RH_NULL);
    put_sized(&mut parameters, NAME, &[])?;
    marshal(NAME, CC_SIGN, &[key_handle], &[Auth::Password], &parameters)
}

/// Parses a `TPM2_Sign` response carrying an ECDSA signature: `(r, s)`, big-endian, each at
/// most 32 bytes (P-256).
pub fn parse_ecdsa_signature_response(response: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
    const NAME: &str = "TPM2_Sign";
    let mut parsed = parse_response(NAME, response, 0)?;
    let parameters = &mut parsed.parameters;
    let algorithm = parameters.u16("signature.sigAlg")?;
    let hash = parameters.u16("signature.hash")?;
    if algorithm != ALG_ECDSA || hash != ALG_SHA256 {
        return Err(TpmError::ParseResponse {
            command: NAME,
            detail: format!("a signature of algorithm {algorithm:#06x} with hash {hash:#06x}, not ECDSA with SHA-256"),
        });
    }
    let r = parameters.sized("signature.signatureR")?.to_vec();
    let s = parameters.sized("signature.signatureS")?.to_vec();
    parameters.end()?;
    if r.is_empty() || s.is_empty() || r.len() > 32 || s.len() > 32 {
        return Err(TpmError::ParseResponse {
            command: NAME,
            detail: format!(
                "r of {} and s of {} bytes (P-256 has 1 to 32)",
                r.len(),
                s.len()
            ),
        });
    }
    Ok((r, s))
}

/// One command as [`call`] sends it: what [`marshal`] takes, and how many handles the
/// response carries.
struct Call<'a> {
    name: &'static str,
    code: u32,
    handles: &'a [u32],
    sessions: &'a [Auth<'a>],
    parameters: &'a [u8],
    response_handles: usize,
}

/// Marshals `call`, exchanges it with the TPM and hands the checked response to `read`.
fn call<T>(
    tpm: &mut impl TpmTransport,
    call: Call<'_>,
    read: impl FnOnce(Response<'_>) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    let command = marshal(
        call.name,
        call.code,
        call.handles,
        call.sessions,
        call.parameters,
    )?;
    let response = exchange(tpm, call.name, &command)?;
    read(parse_response(call.name, &response, call.response_handles)?)
}

/// The ECDSA signature, `(r, s)`, of the SHA-256 `digest` by the key persisted at
/// `key_handle`.
pub fn sign_ecdsa(
    tpm: &mut impl TpmTransport,
    key_handle: u32,
    digest: &[u8; 32],
) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
    let command = sign_ecdsa_command(key_handle, digest)?;
    parse_ecdsa_signature_response(&exchange(tpm, "TPM2_Sign", &command)?)
}

/// The `TPM2B_PUBLIC` (with its size) of the object at `handle`, or `None` when nothing is
/// there.
pub fn read_public(tpm: &mut impl TpmTransport, handle: u32) -> Result<Option<Vec<u8>>, TpmError> {
    const NAME: &str = "TPM2_ReadPublic";
    let command = marshal(NAME, CC_READ_PUBLIC, &[handle], &[], &[])?;
    let response = exchange(tpm, NAME, &command)?;
    let mut parsed = match parse_response(NAME, &response, 0) {
        Ok(parsed) => parsed,
        Err(TpmError::ResponseCode { code, .. }) if is_handle_error(code) => return Ok(None),
        Err(error) => return Err(error),
    };
    let public = parsed.parameters.sized_with_prefix("outPublic")?.to_vec();
    if public.len() == 2 {
        return Err(parsed.parameters.fail("an empty outPublic".into()));
    }
    parsed.parameters.sized("name")?;
    parsed.parameters.sized("qualifiedName")?;
    parsed.parameters.end()?;
    Ok(Some(public))
}

/// `TPM2_CreatePrimary` of `template` (a `TPMT_PUBLIC`) under `hierarchy`: the transient
/// handle.
pub fn create_primary(
    tpm: &mut impl TpmTransport,
    hierarchy: u32,
    template: &[u8],
) -> Result<u32, TpmError> {
    const NAME: &str = "TPM2_CreatePrimary";
    let mut parameters = Vec::with_capacity(template.len() + 16);
    // inSensitive: a TPMS_SENSITIVE_CREATE with empty userAuth and data.
    put_sized(&mut parameters, NAME, &[0, 0, 0, 0])?;
    put_sized(&mut parameters, NAME, template)?;
    put_sized(&mut parameters, NAME, &[])?; // outsideInfo
    put_u32(&mut parameters, 0); // creationPCR: no selection
    let command = Call {
        name: NAME,
        code: CC_CREATE_PRIMARY,
        handles: &[hierarchy],
        sessions: &[Auth::Password],
        parameters: &parameters,
        response_handles: 1,
    };
    call(tpm, command, |mut parsed| {
        parsed.parameters.sized("outPublic")?;
        Ok(parsed.handles[0])
    })
}

/// `TPM2_EvictControl` by the owner: persists the transient `object` at `persistent`, or,
/// with `object == persistent`, removes the persistent object.
pub fn evict_control(
    tpm: &mut impl TpmTransport,
    object: u32,
    persistent: u32,
) -> Result<(), TpmError> {
    const NAME: &str = "TPM2_EvictControl";
    let command = Call {
        name: NAME,
        code: CC_EVICT_CONTROL,
        handles: &[TPM_RH_OWNER, object],
        sessions: &[Auth::Password],
        parameters: &persistent.to_be_bytes(),
        response_handles: 0,
    };
    call(tpm, command, |parsed| parsed.parameters.end())
}

/// `TPM2_FlushContext` of a transient object or session.
pub fn flush_context(tpm: &mut impl TpmTransport, handle: u32) -> Result<(), TpmError> {
    const NAME: &str = "TPM2_FlushContext";
    let command = Call {
        name: NAME,
        code: CC_FLUSH_CONTEXT,
        handles: &[],
        sessions: &[],
        parameters: &handle.to_be_bytes(),
        response_handles: 0,
    };
    call(tpm, command, |parsed| parsed.parameters.end())
}

/// `TPM2_StartAuthSession`: an unsalted, unbound SHA-256 policy session without parameter
/// encryption; `nonce` is the caller's nonce (16 to 32 bytes).
pub fn start_policy_session(tpm: &mut impl TpmTransport, nonce: &[u8]) -> Result<u32, TpmError> {
    const NAME: &str = "TPM2_StartAuthSession";
    let mut parameters = Vec::with_capacity(48);
    put_sized(&mut parameters, NAME, nonce)?;
    put_sized(&mut parameters, NAME, &[])?; // encryptedSalt
    parameters.push(TPM_SE_POLICY);
    put_u16(&mut parameters, ALG_NULL); // symmetric
    put_u16(&mut parameters, ALG_SHA256); // authHash
    let command = Call {
        name: NAME,
        code: CC_START_AUTH_SESSION,
        handles: &[TPM_RH_NULL, TPM_RH_NULL],
        sessions: &[],
        parameters: &parameters,
        response_handles: 1,
    };
    call(tpm, command, |mut parsed| {
        parsed.parameters.sized("nonceTPM")?;
        parsed.parameters.end()?;
        Ok(parsed.handles[0])
    })
}

/// `TPM2_PolicySecret(TPM_RH_ENDORSEMENT)` on `session` (the EK's policy).
pub fn policy_secret_endorsement(
    tpm: &mut impl TpmTransport,
    session: u32,
) -> Result<(), TpmError> {
    const NAME: &str = "TPM2_PolicySecret";
    let mut parameters = Vec::with_capacity(10);
    put_sized(&mut parameters, NAME, &[])?; // nonceTPM
    put_sized(&mut parameters, NAME, &[])?; // cpHashA
    put_sized(&mut parameters, NAME, &[])?; // policyRef
    put_u32(&mut parameters, 0); // expiration
    let command = Call {
        name: NAME,
        code: CC_POLICY_SECRET,
        handles: &[TPM_RH_ENDORSEMENT, session],
        sessions: &[Auth::Password],
        parameters: &parameters,
        response_handles: 0,
    };
    call(tpm, command, |mut parsed| {
        parsed.parameters.sized("timeout")?;
        parsed.parameters.take(6, "policyTicket")?;
        parsed.parameters.sized("policyTicket.digest")?;
        parsed.parameters.end()
    })
}

/// `TPM2_ActivateCredential`: the SRK (password) is the activated object, the EK (policy
/// `session`) decrypts; returns the credential (`certInfo`).
pub fn activate_credential(
    tpm: &mut impl TpmTransport,
    session: u32,
    nonce: &[u8],
    credential_blob: &[u8],
    secret: &[u8],
) -> Result<Vec<u8>, TpmError> {
    const NAME: &str = "TPM2_ActivateCredential";
    let mut parameters = Vec::with_capacity(credential_blob.len() + secret.len() + 4);
    put_sized(&mut parameters, NAME, credential_blob)?;
    put_sized(&mut parameters, NAME, secret)?;
    let command = Call {
        name: NAME,
        code: CC_ACTIVATE_CREDENTIAL,
        handles: &[SRK_HANDLE, EK_HANDLE],
        sessions: &[Auth::Password, Auth::Policy { session, nonce }],
        parameters: &parameters,
        response_handles: 0,
    };
    call(tpm, command, |mut parsed| {
        let credential = parsed.parameters.sized("certInfo")?.to_vec();
        parsed.parameters.end()?;
        Ok(credential)
    })
}

/// `TPM2_Import` under the SRK of a duplicated object with an inner AES-128-CFB wrap:
/// returns the `TPM2B_PRIVATE` bytes (without size) the TPM can load.
pub fn import(
    tpm: &mut impl TpmTransport,
    encryption_key: &[u8],
    public: &[u8],
    duplicate: &[u8],
    seed: &[u8],
) -> Result<Vec<u8>, TpmError> {
    const NAME: &str = "TPM2_Import";
    let mut parameters = Vec::with_capacity(public.len() + duplicate.len() + seed.len() + 32);
    put_sized(&mut parameters, NAME, encryption_key)?;
    put_sized(&mut parameters, NAME, public)?;
    put_sized(&mut parameters, NAME, duplicate)?;
    put_sized(&mut parameters, NAME, seed)?;
    put_u16(&mut parameters, ALG_AES);
    put_u16(&mut parameters, 128);
    put_u16(&mut parameters, ALG_CFB);
    let command = Call {
        name: NAME,
        code: CC_IMPORT,
        handles: &[SRK_HANDLE],
        sessions: &[Auth::Password],
        parameters: &parameters,
        response_handles: 0,
    };
    call(tpm, command, |mut parsed| {
        let private = parsed.parameters.sized("outPrivate")?.to_vec();
        parsed.parameters.end()?;
        Ok(private)
    })
}

/// `TPM2_Load` under the SRK: the transient handle.
pub fn load(tpm: &mut impl TpmTransport, private: &[u8], public: &[u8]) -> Result<u32, TpmError> {
    const NAME: &str = "TPM2_Load";
    let mut parameters = Vec::with_capacity(private.len() + public.len() + 4);
    put_sized(&mut parameters, NAME, private)?;
    put_sized(&mut parameters, NAME, public)?;
    let command = Call {
        name: NAME,
        code: CC_LOAD,
        handles: &[SRK_HANDLE],
        sessions: &[Auth::Password],
        parameters: &parameters,
        response_handles: 1,
    };
    call(tpm, command, |mut parsed| {
        parsed.parameters.sized("name")?;
        parsed.parameters.end()?;
        Ok(parsed.handles[0])
    })
}

/// An RSA 2048 restricted-decryption `TPMT_PUBLIC` with AES-128-CFB, NULL scheme and the
/// default exponent.
fn rsa_storage_template(attributes: u32, policy: &[u8], unique_size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + unique_size);
    put_u16(&mut out, ALG_RSA);
    put_u16(&mut out, ALG_SHA256);
    put_u32(&mut out, attributes);
    put_u16(&mut out, policy.len() as u16);
    out.extend_from_slice(policy);
    put_u16(&mut out, ALG_AES);
    put_u16(&mut out, 128);
    put_u16(&mut out, ALG_CFB);
    put_u16(&mut out, ALG_NULL); // scheme
    put_u16(&mut out, 2048);
    put_u32(&mut out, 0); // exponent: 65537
    put_u16(&mut out, unique_size as u16);
    out.resize(out.len() + unique_size, 0);
    out
}

/// The TCG default EK template, RSA 2048 (template L-1: policy A, 256 zero bytes of unique),
/// as tss-esapi's `ek::create_ek_public_from_default_template_2` builds it.
pub fn ek_template() -> Vec<u8> {
    rsa_storage_template(EK_ATTRIBUTES, &EK_POLICY_A, 256)
}

/// The RSA 2048 SRK template of [`crate::tpm`] (empty policy and unique).
pub fn srk_template() -> Vec<u8> {
    rsa_storage_template(SRK_ATTRIBUTES, &[], 0)
}

/// The public area at `handle`, after creating the primary key from `template` under
/// `hierarchy` and persisting it there if the TPM has none. Must be an RSA key.
pub fn ensure_primary(
    tpm: &mut impl TpmTransport,
    handle: u32,
    hierarchy: u32,
    template: &[u8],
) -> Result<Vec<u8>, TpmError> {
    let public = match read_public(tpm, handle)? {
        Some(public) => public,
        None => {
            let transient = create_primary(tpm, hierarchy, template)?;
            let persisted = evict_control(tpm, transient, handle);
            let flushed = flush_context(tpm, transient);
            persisted?;
            flushed?;
            read_public(tpm, handle)?.ok_or(TpmError::PersistedKeyMissing { handle })?
        }
    };
    // The very parser DPS (and the emulator) apply to what the device sends.
    wire::parse_rsa_storage_key(&public)
        .map_err(|source| TpmError::UnsuitableKey { handle, source })?;
    Ok(public)
}

/// The EK and SRK public areas (`TPM2B_PUBLIC`), creating and persisting either when absent.
pub fn ensure_keys(tpm: &mut impl TpmTransport) -> Result<crate::dps_tpm::TpmPublicKeys, TpmError> {
    Ok(crate::dps_tpm::TpmPublicKeys {
        endorsement_key: ensure_primary(tpm, EK_HANDLE, TPM_RH_ENDORSEMENT, &ek_template())?,
        storage_root_key: ensure_primary(tpm, SRK_HANDLE, TPM_RH_OWNER, &srk_template())?,
    })
}

/// The five parts of DPS's `authenticationKey`, each without its size.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthenticationKey<'a> {
    /// `TPM2B_ID_OBJECT`: the credential for the EK.
    pub credential_blob: &'a [u8],
    /// `TPM2B_ENCRYPTED_SECRET`: its seed, encrypted to the EK.
    pub secret: &'a [u8],
    /// `TPM2B_PRIVATE`: the HMAC key, duplicated to the SRK.
    pub duplicate: &'a [u8],
    /// `TPM2B_ENCRYPTED_SECRET`: the import seed, encrypted to the SRK.
    pub seed: &'a [u8],
    /// `TPM2B_PUBLIC`: the HMAC key's public area.
    pub public: &'a [u8],
}

/// Splits DPS's `authenticationKey` into its parts; exactly five `TPM2B`s, nothing after.
pub fn parse_authentication_key(blob: &[u8]) -> Result<AuthenticationKey<'_>, TpmError> {
    let mut rest = blob;
    let mut next = |part: &'static str| -> Result<&[u8], TpmError> {
        let fail = |detail: String| TpmError::ParseAuthenticationKey { part, detail };
        let size = rest
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| fail(format!("{} bytes left, no size", rest.len())))?;
        let body = rest.get(2..2 + size).ok_or_else(|| {
            fail(format!(
                "{size} bytes declared, {} left",
                rest.len().saturating_sub(2)
            ))
        })?;
        rest = &rest[2 + size..];
        Ok(body)
    };
    let key = AuthenticationKey {
        credential_blob: next("TPM2B_ID_OBJECT")?,
        secret: next("TPM2B_ENCRYPTED_SECRET")?,
        duplicate: next("TPM2B_PRIVATE")?,
        seed: next("TPM2B_ENCRYPTED_SECRET (seed)")?,
        public: next("TPM2B_PUBLIC")?,
    };
    if !rest.is_empty() {
        return Err(TpmError::ParseAuthenticationKey {
            part: "the end",
            detail: format!("{} bytes after TPM2B_PUBLIC", rest.len()),
        });
    }
    if key.public.is_empty() {
        return Err(TpmError::ParseAuthenticationKey {
            part: "TPM2B_PUBLIC",
            detail: "an empty public area".into(),
        });
    }
    Ok(key)
}

fn nonce(command: &'static str) -> Result<[u8; NONCE_SIZE], TpmError> {
    let mut nonce = [0u8; NONCE_SIZE];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut nonce)
        .map_err(|_| TpmError::Nonce { command })?;
    Ok(nonce)
}

/// Puts DPS's HMAC key into the TPM at `key_handle` (replacing what is there):
/// ActivateCredential (SRK, EK under `PolicySecret(TPM_RH_ENDORSEMENT)`) recovers the inner
/// wrapping key, Import under the SRK unwraps the duplicate, Load + EvictControl persist it.
/// The EK and SRK must exist ([`ensure_keys`]). The key never leaves the TPM.
pub fn import_authentication_key(
    tpm: &mut impl TpmTransport,
    key_handle: u32,
    blob: &[u8],
) -> Result<(), TpmError> {
    let parts = parse_authentication_key(blob)?;
    let session = start_policy_session(tpm, &nonce("TPM2_StartAuthSession")?)?;
    let activated = policy_secret_endorsement(tpm, session).and_then(|()| {
        activate_credential(
            tpm,
            session,
            &nonce("TPM2_ActivateCredential")?,
            parts.credential_blob,
            parts.secret,
        )
    });
    let flushed = flush_context(tpm, session);
    let inner_key = activated?;
    flushed?;

    let private = import(tpm, &inner_key, parts.public, parts.duplicate, parts.seed)?;
    let loaded = load(tpm, &private, parts.public)?;
    let stored = (|| {
        if read_public(tpm, key_handle)?.is_some() {
            evict_control(tpm, key_handle, key_handle)?;
        }
        evict_control(tpm, loaded, key_handle)
    })();
    let flushed = flush_context(tpm, loaded);
    stored?;
    flushed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Answers with scripted responses and records the commands.
    #[derive(Default)]
    struct Script {
        responses: VecDeque<Vec<u8>>,
        commands: Vec<Vec<u8>>,
    }

    impl TpmTransport for Script {
        fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
            self.commands.push(command.to_vec());
            self.responses
                .pop_front()
                .ok_or_else(|| "no scripted response left".into())
        }
    }

    impl Script {
        fn new(responses: Vec<Vec<u8>>) -> Script {
            Script {
                responses: responses.into(),
                commands: Vec::new(),
            }
        }

        /// The command codes sent, in order.
        fn codes(&self) -> Vec<u32> {
            self.commands
                .iter()
                .map(|c| u32::from_be_bytes(c[6..10].try_into().unwrap()))
                .collect()
        }

        /// The handle field of each command (FlushContext: its parameter).
        fn first_handles(&self) -> Vec<u32> {
            self.commands
                .iter()
                .map(|c| u32::from_be_bytes(c[10..14].try_into().unwrap()))
                .collect()
        }
    }

    /// A success response: handles, then parameters (with parameterSize and an empty
    /// password-session answer when `sessions`).
    fn ok(handles: &[u32], parameters: &[u8], sessions: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put_u16(
            &mut out,
            if sessions {
                TPM_ST_SESSIONS
            } else {
                TPM_ST_NO_SESSIONS
            },
        );
        put_u32(&mut out, 0);
        put_u32(&mut out, 0);
        for h in handles {
            put_u32(&mut out, *h);
        }
        if sessions {
            put_u32(&mut out, parameters.len() as u32);
        }
        out.extend_from_slice(parameters);
        if sessions {
            out.extend_from_slice(&[0, 0, 1, 0, 0]);
        }
        let size = (out.len() as u32).to_be_bytes();
        out[2..6].copy_from_slice(&size);
        out
    }

    fn refused(code: u32) -> Vec<u8> {
        let mut out = vec![0x80, 0x01, 0, 0, 0, 10];
        out.extend_from_slice(&code.to_be_bytes());
        out
    }

    fn sized(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    fn read_public_answer(template: &[u8]) -> Vec<u8> {
        let name = sized(&[0x00, 0x0b, 1, 2, 3]);
        [sized(template), name.clone(), name].concat()
    }

    /// A valid `TPM2_HMAC` response (also a fuzz corpus seed).
    pub(crate) fn hmac_ok() -> Vec<u8> {
        ok(&[], &sized(&[7u8; 32]), true)
    }

    #[test]
    fn hmac_command_is_marshalled_as_part_3_says() {
        let command = hmac_command(0x8100_0100, b"abc").expect("fits");
        let expected: Vec<u8> = [
            &[0x80, 0x02][..],               // TPM_ST_SESSIONS
            &[0, 0, 0, 34],                  // commandSize
            &[0, 0, 0x01, 0x55],             // TPM_CC_HMAC
            &[0x81, 0, 0x01, 0],             // key handle
            &[0, 0, 0, 9],                   // authorizationSize
            &[0x40, 0, 0, 9, 0, 0, 0, 0, 0], // TPM_RS_PW, empty nonce, attrs, empty password
            &[0, 3, b'a', b'b', b'c'],       // buffer
            &[0, 0x0b],                      // TPM_ALG_SHA256
        ]
        .concat();
        assert_eq!(command, expected);
        assert!(matches!(
            hmac_command(1, &[0; MAX_HMAC_INPUT + 1]),
            Err(TpmError::Marshal { .. })
        ));
    }

    #[test]
    fn hmac_responses_are_checked_not_trusted() {
        let good = hmac_ok();
        assert_eq!(parse_hmac_response(&good).unwrap(), [7u8; 32]);
        let error = parse_hmac_response(&refused(0x18b)).unwrap_err();
        assert!(matches!(
            error,
            TpmError::ResponseCode {
                command: "TPM2_HMAC",
                code: 0x18b
            }
        ));
        assert!(error.to_string().contains("response code 0x18b"));
        for cut in 0..good.len() {
            assert!(parse_hmac_response(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A digest size that runs past the parameters, a parameterSize past the end, a short
        // digest, a size field that lies, an unknown tag.
        for (at, value) in [(15, 200u8), (13, 0xff), (15, 20), (5, 0xff), (1, 0x03)] {
            let mut lying = good.clone();
            lying[at] = value;
            assert!(parse_hmac_response(&lying).is_err(), "byte {at} = {value}");
        }
    }

    #[test]
    fn sign_is_marshalled_as_part_3_says_and_its_signature_checked() {
        let digest = [5u8; 32];
        let command = sign_ecdsa_command(0x8100_0101, &digest).expect("fits");
        let expected: Vec<u8> = [
            &[0x80, 0x02][..],                  // TPM_ST_SESSIONS
            &[0, 0, 0, 73],                     // commandSize
            &[0, 0, 0x01, 0x5d],                // TPM_CC_Sign
            &[0x81, 0, 0x01, 0x01],             // key handle
            &[0, 0, 0, 9],                      // authorizationSize
            &[0x40, 0, 0, 9, 0, 0, 0, 0, 0],    // TPM_RS_PW, empty password
            &sized(&digest),                    // digest
            &[0, 0x18, 0, 0x0b],                // ECDSA, SHA-256
            &[0x80, 0x24, 0x40, 0, 0, 7, 0, 0], // null hashcheck ticket
        ]
        .concat();
        assert_eq!(command, expected);

        let signature = [&[0, 0x18, 0, 0x0b][..], &sized(&[1; 32]), &sized(&[2; 31])].concat();
        let mut tpm = Script::new(vec![ok(&[], &signature, true)]);
        let (r, s) = sign_ecdsa(&mut tpm, 0x8100_0101, &digest).unwrap();
        assert_eq!((r, s), (vec![1; 32], vec![2; 31]));
        assert_eq!(tpm.codes(), [CC_SIGN]);

        let good = ok(&[], &signature, true);
        for cut in 0..good.len() {
            assert!(
                parse_ecdsa_signature_response(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let rsa = [&[0, 0x14, 0, 0x0b][..], &sized(&[1; 32]), &sized(&[2; 32])].concat();
        let too_long = [&[0, 0x18, 0, 0x0b][..], &sized(&[1; 33]), &sized(&[2; 32])].concat();
        for bad in [rsa, too_long] {
            let error = parse_ecdsa_signature_response(&ok(&[], &bad, true)).unwrap_err();
            assert!(matches!(error, TpmError::ParseResponse { .. }), "{error}");
        }
    }

    #[test]
    fn templates_are_tss_esapis() {
        use tss_esapi::abstraction::{ek, AsymmetricAlgorithmSelection};
        use tss_esapi::interface_types::key_bits::RsaKeyBits;
        use tss_esapi::traits::Marshall;
        let tss_ek = ek::create_ek_public_from_default_template_2(
            AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            None,
        )
        .unwrap();
        assert_eq!(ek_template(), tss_ek.marshall().unwrap());
        let tss_srk = crate::tpm::srk_template("test").unwrap();
        assert_eq!(srk_template(), tss_srk.marshall().unwrap());
    }

    #[test]
    fn present_keys_are_read_and_absent_ones_created_and_persisted() {
        let ek = ek_template();
        // What the TPM answers for the SRK it created: the template with its modulus.
        let template = srk_template();
        let srk = [&template[..template.len() - 2], &sized(&[0xC5; 256])].concat();
        let mut tpm = Script::new(vec![
            ok(&[], &read_public_answer(&ek), false), // EK present
            refused(0x18b),                           // no SRK
            ok(&[0x8000_0000], &sized(&srk), true),   // CreatePrimary
            ok(&[], &[], true),                       // EvictControl
            ok(&[], &[], false),                      // FlushContext
            ok(&[], &read_public_answer(&srk), false),
        ]);
        let keys = ensure_keys(&mut tpm).unwrap();
        assert_eq!(keys.endorsement_key, sized(&ek));
        assert_eq!(keys.storage_root_key, sized(&srk));
        assert_eq!(
            tpm.codes(),
            [
                CC_READ_PUBLIC,
                CC_READ_PUBLIC,
                CC_CREATE_PRIMARY,
                CC_EVICT_CONTROL,
                CC_FLUSH_CONTEXT,
                CC_READ_PUBLIC
            ]
        );
        assert_eq!(
            tpm.first_handles(),
            [
                EK_HANDLE,
                SRK_HANDLE,
                TPM_RH_OWNER,
                TPM_RH_OWNER,
                0x8000_0000,
                SRK_HANDLE
            ]
        );
        // The template is sent as the inPublic of CreatePrimary.
        let create = &tpm.commands[2];
        assert!(create.windows(template.len()).any(|w| w == template));
    }

    #[test]
    fn a_failed_persist_still_flushes_the_transient_key() {
        let mut tpm = Script::new(vec![
            refused(0x18b),
            ok(&[0x8000_0001], &sized(&ek_template()), true),
            refused(0x902), // EvictControl: out of NV space
            ok(&[], &[], false),
        ]);
        let error = ensure_keys(&mut tpm).unwrap_err();
        assert!(matches!(
            error,
            TpmError::ResponseCode {
                command: "TPM2_EvictControl",
                code: 0x902
            }
        ));
        assert_eq!(tpm.codes().last(), Some(&CC_FLUSH_CONTEXT));
        assert_eq!(tpm.first_handles().last(), Some(&0x8000_0001));
    }

    #[test]
    fn an_ecc_key_is_refused() {
        let mut ecc = ek_template();
        ecc[0..2].copy_from_slice(&0x0023u16.to_be_bytes());
        let mut tpm = Script::new(vec![ok(&[], &read_public_answer(&ecc), false)]);
        assert!(matches!(
            ensure_keys(&mut tpm),
            Err(TpmError::UnsuitableKey {
                handle: EK_HANDLE,
                ..
            })
        ));
    }

    fn blob() -> Vec<u8> {
        [
            sized(b"credential"),
            sized(b"secret"),
            sized(b"duplicate"),
            sized(b"seed"),
            sized(b"public"),
        ]
        .concat()
    }

    #[test]
    fn authentication_keys_are_split_exactly() {
        let blob = blob();
        let key = parse_authentication_key(&blob).unwrap();
        assert_eq!(key.credential_blob, b"credential");
        assert_eq!(key.public, b"public");
        for cut in 0..blob.len() {
            assert!(parse_authentication_key(&blob[..cut]).is_err(), "cut {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(parse_authentication_key(&longer).is_err());
        assert!(parse_authentication_key(&[0; 10]).is_err());
    }

    #[test]
    fn the_import_runs_activate_import_load_persist_and_flushes() {
        let session = 0x0300_0000;
        let loaded = 0x8000_0002;
        let key_handle = 0x8100_0100;
        let mut tpm = Script::new(vec![
            ok(&[session], &sized(&[9; 32]), false), // StartAuthSession
            ok(
                &[],
                &[
                    &sized(&[])[..],
                    &[0x80, 0x21, 0x40, 0, 0, 0x0b],
                    &sized(&[]),
                ]
                .concat(),
                true,
            ), // PolicySecret
            ok(&[], &sized(&[5; 16]), true),         // ActivateCredential
            ok(&[], &[], false),                     // FlushContext(session)
            ok(&[], &sized(b"private"), true),       // Import
            ok(&[loaded], &sized(&[0, 0x0b, 1]), true), // Load
            ok(&[], &read_public_answer(b"old"), false), // an old key is there
            ok(&[], &[], true),                      // EvictControl(old)
            ok(&[], &[], true),                      // EvictControl(loaded)
            ok(&[], &[], false),                     // FlushContext(loaded)
        ]);
        import_authentication_key(&mut tpm, key_handle, &blob()).unwrap();
        assert_eq!(
            tpm.codes(),
            [
                CC_START_AUTH_SESSION,
                CC_POLICY_SECRET,
                CC_ACTIVATE_CREDENTIAL,
                CC_FLUSH_CONTEXT,
                CC_IMPORT,
                CC_LOAD,
                CC_READ_PUBLIC,
                CC_EVICT_CONTROL,
                CC_EVICT_CONTROL,
                CC_FLUSH_CONTEXT
            ]
        );
        // ActivateCredential: SRK then EK, the EK with the policy session.
        let activate = &tpm.commands[2];
        assert_eq!(&activate[10..18], &[0x81, 0, 0, 1, 0x81, 1, 0, 1]);
        assert!(activate
            .windows(4)
            .any(|w| w == session.to_be_bytes().as_slice()));
        // Import is given the recovered inner key.
        assert!(tpm.commands[4].windows(18).any(|w| w == sized(&[5; 16])));
        assert_eq!(tpm.first_handles()[9], loaded);
        let flushed_session = u32::from_be_bytes(tpm.commands[3][10..14].try_into().unwrap());
        assert_eq!(flushed_session, session);
    }

    #[test]
    fn a_refused_activation_still_flushes_the_session() {
        let session = 0x0300_0001;
        let mut tpm = Script::new(vec![
            ok(&[session], &sized(&[9; 32]), false),
            ok(
                &[],
                &[
                    &sized(&[])[..],
                    &[0x80, 0x21, 0x40, 0, 0, 0x0b],
                    &sized(&[]),
                ]
                .concat(),
                true,
            ),
            refused(0x9a2), // ActivateCredential: integrity failure
            ok(&[], &[], false),
        ]);
        let error = import_authentication_key(&mut tpm, 0x8100_0100, &blob()).unwrap_err();
        assert!(matches!(
            error,
            TpmError::ResponseCode {
                command: "TPM2_ActivateCredential",
                ..
            }
        ));
        assert_eq!(tpm.codes().last(), Some(&CC_FLUSH_CONTEXT));
        assert_eq!(tpm.first_handles().last(), Some(&session));
    }

    #[test]
    fn a_lying_or_missing_response_is_an_error_not_a_panic() {
        let good = ok(&[0x8000_0000], &sized(&srk_template()), true);
        for cut in 0..good.len() {
            let mut tpm = Script::new(vec![good[..cut].to_vec()]);
            assert!(create_primary(&mut tpm, TPM_RH_OWNER, &srk_template()).is_err());
        }
        let mut tpm = Script::new(vec![]);
        assert!(matches!(
            flush_context(&mut tpm, 1),
            Err(TpmError::Exchange {
                command: "TPM2_FlushContext",
                ..
            })
        ));
        let mut tpm = Script::new(vec![vec![0; MAX_MESSAGE + 1]]);
        assert!(read_public(&mut tpm, EK_HANDLE).is_err());
        // Bytes after the parameters of a no-sessions response.
        let mut trailing = ok(&[], &[], false);
        trailing.push(0);
        trailing[5] = 11;
        let mut tpm = Script::new(vec![trailing]);
        assert!(flush_context(&mut tpm, 1).is_err());
    }
}
