//! Every error the emulator library returns.

use std::path::PathBuf;

/// Errors of the hub emulator library.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Creating the state directory failed.
    #[error("cannot create state directory {path}")]
    CreateStateDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading a state file failed.
    #[error("cannot read state file {path}")]
    ReadState {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A state file holds invalid JSON.
    #[error("state file {path} is not valid")]
    ParseState {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Writing a state file (atomically: temp file + rename) failed.
    #[error("cannot write state file {path}")]
    WriteState {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating the local CA or the server certificate failed.
    #[error("cannot generate the {what} certificate")]
    GenerateCertificate {
        /// Which certificate ("CA", "server").
        what: &'static str,
        /// Cause.
        #[source]
        source: rcgen::Error,
    },
    /// A stored PEM file could not be used.
    #[error("invalid PEM in {path}")]
    InvalidPem {
        /// The file.
        path: PathBuf,
    },
    /// Building the TLS server configuration failed.
    #[error("cannot build the TLS configuration")]
    TlsConfig(#[source] rustls::Error),
    /// Binding a listening socket failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Address that was requested.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Starting the emulator's runtime thread failed.
    #[error("cannot start the emulator runtime")]
    Runtime(#[source] std::io::Error),
    /// The device id is not acceptable.
    #[error(
        "invalid device id {id:?}: use 1-128 characters of A-Z a-z 0-9 - . _ : @ = + , ! ( ) '"
    )]
    InvalidDeviceId {
        /// The id as given.
        id: String,
    },
    /// An enrollment request is not one the emulator's DPS can hold.
    #[error("enrollment {id}: {reason}")]
    InvalidEnrollment {
        /// The registration id or group id.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An X.509 enrollment group's signing certificate is not one CA certificate.
    #[error("signing certificate refused: {reason}")]
    InvalidSigningCertificate {
        /// What is wrong.
        reason: &'static str,
    },
    /// An ID scope is not of the form DPS issues (`0ne` and 8 hex digits).
    #[error("ID scope {scope:?} is not `0ne` followed by 8 hex digits")]
    InvalidIdScope {
        /// The scope as given.
        scope: String,
    },
    /// A CA given to serve with is unusable.
    #[error("CA in {dir}: {problem}")]
    InvalidCa {
        /// The directory given.
        dir: std::path::PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// A TPM enrollment's endorsement key is not an RSA 2048 `TPM2B_PUBLIC` DPS can use.
    #[error("endorsement key of TPM enrollment {registration_id} rejected: {reason}")]
    InvalidEndorsementKey {
        /// Registration id of the enrollment.
        registration_id: String,
        /// What is wrong with the key.
        reason: String,
    },
    /// The device is not in the registry.
    #[error("device {id} is not registered")]
    DeviceNotFound {
        /// The device id.
        id: String,
    },
    /// The device already exists.
    #[error("device {id} is already registered")]
    DeviceExists {
        /// The device id.
        id: String,
    },
    /// A twin document or patch was rejected.
    #[error("twin of device {id} rejected the update")]
    Twin {
        /// The device id.
        id: String,
        /// Why.
        #[source]
        source: TwinError,
    },
    /// The device is not connected (direct method invocation).
    #[error("device {id} is not online")]
    DeviceNotOnline {
        /// The device id.
        id: String,
    },
    /// The device did not answer a direct method in time.
    #[error("device {id} did not answer method {method} in time")]
    MethodTimeout {
        /// The device id.
        id: String,
        /// The method name.
        method: String,
    },
    /// The emulator has been shut down.
    #[error("the emulator is shut down")]
    ShutDown,
    /// A call to the running emulator's service API failed.
    #[error("service API request {request} failed")]
    ServiceRequest {
        /// Method and path.
        request: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The service API answered with an error status.
    #[error("service API request {request} answered {status}: {body}")]
    ServiceStatus {
        /// Method and path.
        request: String,
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
    },
}

/// Why a twin patch or document was rejected; maps to an IoT Hub status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    /// The payload is not JSON.
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// The payload is JSON but not an object.
    #[error("a twin patch must be a JSON object")]
    NotAnObject,
    /// Nesting deeper than IoT Hub allows.
    #[error("nesting depth {depth} exceeds the limit of {limit}")]
    TooDeep {
        /// Depth found.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// The resulting properties document is larger than IoT Hub allows.
    #[error("document of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size found.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A property name is not allowed ($-prefixed, contains '.', ' ' or control characters).
    #[error("property name {0:?} is not allowed")]
    InvalidKey(String),
    /// The If-Match etag did not match.
    #[error("etag mismatch")]
    EtagMismatch,
}

impl TwinError {
    /// The IoT Hub status code reported for this error.
    pub fn status(&self) -> u16 {
        match self {
            TwinError::TooLarge { .. } => 413,
            TwinError::EtagMismatch => 412,
            _ => 400,
        }
    }
}

/// Errors decoding an MQTT 3.1.1 packet from untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The remaining-length varint is longer than 4 bytes.
    #[error("malformed remaining length")]
    MalformedLength,
    /// The packet is larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The packet type nibble is reserved or not valid from a client.
    #[error("unexpected packet type {0}")]
    UnexpectedType(u8),
    /// Fixed-header flags are invalid for the packet type.
    #[error("invalid flags {flags:#x} for packet type {packet_type}")]
    InvalidFlags {
        /// Packet type.
        packet_type: u8,
        /// The flags nibble.
        flags: u8,
    },
    /// The body ended before a field was complete.
    #[error("packet body truncated")]
    Truncated,
    /// A string field is not UTF-8 or contains U+0000.
    #[error("invalid UTF-8 string field")]
    InvalidString,
    /// The CONNECT protocol name is not "MQTT".
    #[error("unsupported protocol name")]
    ProtocolName,
    /// The CONNECT protocol level is not 4 (3.1.1).
    #[error("unsupported protocol level {0}")]
    ProtocolLevel(u8),
    /// A field holds a value MQTT 3.1.1 forbids.
    #[error("protocol violation: {0}")]
    Violation(&'static str),
}
