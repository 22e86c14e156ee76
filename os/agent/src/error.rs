//! The agent library's error types: [`AgentError`] for every operation, and
//! [`CloudSetupError`] for why the agent component cannot connect yet (what its log's `cloud:
//! offline` line says). Each variant is named after the step that failed and carries what that
//! step worked on; the underlying cause is kept as `#[source]`, never repeated in the message.

use std::path::PathBuf;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A connection string could not be parsed.
    #[error("invalid connection string: {reason}")]
    ParseConnectionString {
        /// What is wrong with it (never includes the key).
        reason: String,
    },
    /// A base64 shared access key could not be decoded.
    #[error("shared access key for {identity} is not valid base64")]
    DecodeKey {
        /// Device or registration id the key belongs to.
        identity: String,
        /// Decoder error.
        #[source]
        source: base64::DecodeError,
    },
    /// Signing a SAS string failed (TPM or software key).
    #[error("signing the SAS token for {resource} failed")]
    SignSas {
        /// Resource URI being signed.
        resource: String,
        /// Why the signer failed.
        #[source]
        source: Box<AgentError>,
    },
    /// The blocking thread computing a signature died.
    #[error("the signing thread for {resource} stopped unexpectedly")]
    SignerThread {
        /// Resource URI being signed.
        resource: String,
    },
    /// A file (CA, certificate, key) could not be read.
    #[error("reading {path} failed")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// PEM data did not contain what was expected.
    #[error("{what} in {origin} is missing or malformed")]
    ParsePem {
        /// "CA certificate", "client certificate", "private key".
        what: &'static str,
        /// Where the PEM came from.
        origin: String,
    },
    /// rustls rejected the TLS configuration.
    #[error("building the TLS configuration for {host} failed")]
    ConfigureTls {
        /// Hub host name.
        host: String,
        /// rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The MQTT connection failed or dropped.
    #[error("MQTT connection to {host} failed")]
    Connect {
        /// Hub host name.
        host: String,
        /// Transport or protocol error.
        #[source]
        source: Box<rumqttc::ConnectionError>,
    },
    /// The hub refused the MQTT CONNECT.
    #[error("{host} refused the connection ({code})")]
    ConnectRefused {
        /// Hub host name.
        host: String,
        /// CONNACK return code, as text.
        code: String,
        /// The hub refused who the device is (bad credentials, not authorized, unknown
        /// client id), not the moment (unavailable).
        identity_refused: bool,
    },
    /// The hub did not answer a request in time; the connection is presumed dead.
    #[error("{host} did not acknowledge a request within {seconds} s")]
    AcknowledgementTimeout {
        /// Hub host name.
        host: String,
        /// The timeout.
        seconds: u64,
    },
    /// The MQTT client's request queue rejected a request.
    #[error("queueing MQTT {what} for {topic} failed")]
    SendRequest {
        /// "publish" / "subscribe".
        what: &'static str,
        /// Topic involved.
        topic: String,
        /// Client error.
        #[source]
        source: Box<rumqttc::ClientError>,
    },
    /// A twin document or desired patch from the hub was not acceptable.
    #[error("twin document from the hub (topic {topic}) rejected")]
    ParseTwin {
        /// Topic it arrived on.
        topic: String,
        /// What is wrong with it.
        #[source]
        source: crate::twin::TwinDocumentError,
    },
    /// A reported-properties patch given by the application is not acceptable.
    #[error("reported patch rejected before sending")]
    ValidateReported {
        /// What is wrong with it.
        #[source]
        source: crate::twin::TwinDocumentError,
    },
    /// The hub answered a twin request with an error status.
    #[error("hub answered twin {request} (rid {rid}) with status {status}")]
    TwinRequest {
        /// "GET" or "PATCH reported".
        request: &'static str,
        /// Request id.
        rid: u64,
        /// HTTP-style status.
        status: u16,
    },
    /// The offline queue is full; the item was not accepted (nothing already queued is lost).
    #[error("offline queue for {kind} is full ({capacity} items)")]
    QueueFull {
        /// "reported" or "telemetry".
        kind: &'static str,
        /// Queue capacity.
        capacity: usize,
    },
    /// The agent task has stopped; the request could not be delivered.
    #[error("the agent for {device_id} has stopped")]
    AgentStopped {
        /// Device id.
        device_id: String,
    },
    /// A TPM operation failed.
    #[error("TPM {operation} failed (TCTI {tcti})")]
    Tpm {
        /// The ESAPI step, e.g. "create HMAC key".
        operation: &'static str,
        /// The TCTI the TPM was reached by.
        tcti: String,
        /// tss-esapi error.
        #[source]
        source: tss_esapi::Error,
    },
    /// The TPM worker thread is gone.
    #[error("the TPM worker for {tcti} has stopped")]
    TpmWorkerStopped {
        /// The TCTI.
        tcti: String,
    },
    /// The TPM key input was unusable (size etc.).
    #[error("TPM key for handle {handle:#010x} rejected: {reason}")]
    TpmKey {
        /// Persistent handle.
        handle: u32,
        /// What is wrong.
        reason: String,
    },
    /// A TPM 2.0 command through the `tpm` route failed (exchange, response code, malformed
    /// answer).
    #[error("{step} (TPM handle {handle:#010x}) through the tpm route failed")]
    TpmRoute {
        /// What was being done (`signing with the device key`, ...).
        step: &'static str,
        /// The persistent handle it was done with.
        handle: u32,
        /// The failing command.
        #[source]
        source: crate::tpm_commands::TpmError,
    },
    /// DPS registration failed.
    #[error("DPS registration of {registration_id} failed: {reason}")]
    Provision {
        /// Registration id.
        registration_id: String,
        /// What went wrong.
        reason: String,
    },
    /// DPS answered with something that is not a registration operation's state.
    #[error("DPS registration of {registration_id}: unexpected answer")]
    ProvisionAnswer {
        /// Registration id.
        registration_id: String,
        /// What is wrong with the answer.
        #[source]
        source: crate::dps::OperationError,
    },
    /// DPS connection failed.
    #[error("DPS connection for {registration_id} failed")]
    ProvisionConnect {
        /// Registration id.
        registration_id: String,
        /// Transport error.
        #[source]
        source: Box<AgentError>,
    },
    /// Reaching the hub's address through the dialer (the `net` route) failed.
    #[error("dialing {target} failed")]
    Dial {
        /// `HOST:PORT` dialed.
        target: String,
        /// Why the connection could not be made.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TLS handshake with the hub over a dialed connection failed.
    #[error("TLS handshake with {host} failed")]
    TlsHandshake {
        /// Host name the certificate was checked against.
        host: String,
        /// rustls / I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file in the agent's routed storage could not be read or written.
    #[error("{step} of storage file {file} failed")]
    Storage {
        /// What was being done (`open`, `read`, `append`, `replace`, `sync`).
        step: &'static str,
        /// The file name in the agent's storage directory.
        file: String,
        /// The scheme error.
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// The telemetry spool is full; the message was not accepted (nothing spooled is lost).
    #[error("telemetry spool is full ({messages} messages, {bytes} bytes pending)")]
    SpoolFull {
        /// Pending messages.
        messages: usize,
        /// Pending body bytes.
        bytes: usize,
    },
    /// Relaying an app deployment between the twin and init failed at a step.
    #[error("app slot {slot}: {step}")]
    RelayDeployment {
        /// The slot.
        slot: String,
        /// What was being done.
        step: &'static str,
        /// The cause, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Relaying an OS update workflow between the twin and the updater failed at a step.
    #[error("OS update workflow {workflow}: {step}")]
    RelayOsUpdate {
        /// The workflow id.
        workflow: String,
        /// What was being done.
        step: &'static str,
        /// The cause, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The updater wants a file the desired `fileUrls` names no URL for.
    #[error("OS update workflow {workflow}: the desired fileUrls has no URL for file {file_id:?}")]
    OsUpdateFileUrl {
        /// The workflow id.
        workflow: String,
        /// The manifest's file id the updater wants.
        file_id: String,
    },
    /// Reading the updater's status through the `update` route failed.
    #[error("reading the updater's status failed")]
    ReadUpdaterStatus {
        /// The scheme error.
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// What the updater answered a status read with is not a status.
    #[error("the updater's status ({bytes} bytes) is not a status")]
    UpdaterStatus {
        /// Bytes read.
        bytes: usize,
    },
    /// The component could not start serving its schemes.
    #[error("serving the agent's schemes failed at {step}")]
    Serve {
        /// The step (`control socket`, `server thread`, ...).
        step: &'static str,
        /// The scheme error.
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// A part of the component (a thread, the async runtime) could not be started.
    #[error("starting the agent component's {step} failed")]
    StartComponent {
        /// What was being started.
        step: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A module download was asked for something it does not fetch (URL, digest format).
    #[error("module request for {url} refused: {reason}")]
    ModuleRequest {
        /// The URL as given.
        url: String,
        /// What is wrong with the request.
        reason: &'static str,
    },
    /// The server answered a module request with a status other than 200 or 206.
    #[error("{url} answered {status} to the request from byte {offset}")]
    ModuleStatus {
        /// The module's URL.
        url: String,
        /// The byte the request started at.
        offset: u64,
        /// The HTTP status.
        status: u16,
    },
    /// The server's answer to a module request cannot be (the rest of) the module.
    #[error("{url} answered the request from byte {offset} with something other than the module")]
    ModuleResponse {
        /// The module's URL.
        url: String,
        /// The byte the request started at.
        offset: u64,
        /// What is wrong with the answer.
        #[source]
        source: crate::module_fetch::ResponseError,
    },
    /// The server has a module of another size than the deployment names.
    #[error("{url} is {served} bytes, the deployment says {expected}")]
    ModuleSize {
        /// The module's URL.
        url: String,
        /// The size the deployment names.
        expected: u64,
        /// The size the server states (or delivered).
        served: u64,
    },
    /// Connections kept stopping before the module's end.
    #[error(
        "downloading {url} stopped at byte {received} of {expected} after {attempts} connections"
    )]
    ModuleTransfer {
        /// The module's URL.
        url: String,
        /// Bytes received (and given to the sink).
        received: u64,
        /// The module's size.
        expected: u64,
        /// Connections made.
        attempts: u32,
        /// Why the last one stopped.
        #[source]
        source: crate::module_fetch::Interruption,
    },
    /// The sink refused the module's bytes.
    #[error("writing byte {offset} of {url} to its destination failed")]
    ModuleSink {
        /// The module's URL.
        url: String,
        /// The first byte of the refused write.
        offset: u64,
        /// The sink's error.
        #[source]
        source: std::io::Error,
    },
    /// The whole module arrived but its sha256 is not the deployment's.
    #[error("{url} has sha256 {found}, the deployment says {expected}")]
    ModuleHash {
        /// The module's URL.
        url: String,
        /// The sha256 the deployment names.
        expected: String,
        /// The sha256 of what arrived.
        found: String,
    },
    /// The agent was started as a component but `testudo-init` gave it no control socket.
    #[error("no provider control socket ({var} is not set): start the agent under testudo-init or use `testudo-agent run`")]
    NotAComponent {
        /// The environment variable that should describe it.
        var: &'static str,
    },
}

/// Result alias for the agent.
/// Why the agent component has no hub connection configuration yet; it says so on its log
/// and tries again with backoff.
#[derive(Debug, thiserror::Error)]
pub enum CloudSetupError {
    /// The plan's cloud section lacks a value.
    #[error("{missing}")]
    PlanIncomplete {
        /// What is missing, in the plan's words.
        missing: &'static str,
    },
    /// No `net` route.
    #[error("no `net` route: the hub cannot be reached")]
    NoNetRoute,
    /// No `storage` route.
    #[error("no `storage` route: no CA or credentials to connect with")]
    NoStorageRoute,
    /// Neither the image's trust anchors nor a CA file in storage.
    #[error(
        "no trust anchors ({anchors}) and no hub CA certificate ({file} in the agent's storage)"
    )]
    NoTrustAnchors {
        /// The image's trust anchor file.
        anchors: &'static str,
        /// The storage file tried instead.
        file: &'static str,
    },
    /// A credential file in storage could not be read.
    #[error("reading {file} from the agent's storage failed")]
    ReadCredential {
        /// The storage file.
        file: &'static str,
        /// Why.
        #[source]
        source: Box<AgentError>,
    },
    /// Identity `sas` without its key file.
    #[error("no SAS key ({file} in the agent's storage)")]
    NoSasKey {
        /// The storage file.
        file: &'static str,
    },
    /// The SAS key file does not hold a key.
    #[error("the SAS key in {file} is unusable")]
    BadSasKey {
        /// The storage file.
        file: &'static str,
        /// Why.
        #[source]
        source: Box<AgentError>,
    },
    /// Identity `x509` without its certificate.
    #[error("no client certificate ({file} in the agent's storage)")]
    NoClientCertificate {
        /// The storage file.
        file: &'static str,
    },
    /// A TPM-held key is needed but there is no `tpm` route.
    #[error("identity {identity}: {needs} but no `tpm` route")]
    NoTpmRoute {
        /// The plan's identity.
        identity: &'static str,
        /// What needed the TPM.
        needs: &'static str,
    },
    /// The TPM-held key the identity signs with cannot sign.
    #[error("identity {identity}: the {key} at {handle:#010x} cannot sign")]
    TpmKeyCannotSign {
        /// The plan's identity.
        identity: &'static str,
        /// Which key.
        key: &'static str,
        /// Its persistent handle.
        handle: u32,
        /// The trial signature's failure.
        #[source]
        source: Box<AgentError>,
    },
    /// The plan names an identity kind the agent does not know.
    #[error("unknown identity kind {identity:?} in the plan")]
    UnknownIdentity {
        /// As the plan names it.
        identity: String,
    },
    /// Provisioning through DPS failed.
    #[error(transparent)]
    Provisioning(#[from] crate::provisioning::ProvisioningError),
    /// The TLS material does not make a client configuration.
    #[error("the TLS material for {host} is unusable")]
    Tls {
        /// The hub host.
        host: String,
        /// Why.
        #[source]
        source: Box<AgentError>,
    },
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
