//! The crate's one error type: a variant per step that can fail, carrying what that step
//! worked on. Display never repeats a variant's source; `error_chain` prints the chain.

use std::path::PathBuf;

use testudo_plan::RouteBeyondSlot;

/// Why a deployment token, document, key or module was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The token is longer than [`crate::MAX_TOKEN_BYTES`]; nothing of it was read.
    #[error("deployment token is {found} bytes, more than the {max} a token may have")]
    TokenSize {
        /// The token's length in bytes.
        found: usize,
        /// [`crate::MAX_TOKEN_BYTES`].
        max: usize,
    },
    /// The token is not three dot-separated segments (compact JWS serialization).
    #[error("deployment token has {found} segment(s) between dots, a compact JWS has 3")]
    Segments {
        /// How many segments there are.
        found: usize,
    },
    /// A segment is not unpadded base64url (RFC 7515 section 2).
    #[error("deployment token's {segment} is not unpadded base64url")]
    Base64 {
        /// Which segment.
        segment: Segment,
        /// What the decoder said.
        source: base64::DecodeError,
    },
    /// A JSON segment nests deeper than [`crate::MAX_NESTING`]; it was not parsed.
    #[error("deployment token's {segment} nests deeper than {max} levels")]
    Nesting {
        /// Which segment.
        segment: Segment,
        /// [`crate::MAX_NESTING`].
        max: usize,
    },
    /// The protected header is not a JSON object of the parameters this format allows
    /// (`alg`, `kid`, `typ`, and `crit` only to refuse it), each at most once.
    #[error("deployment token's protected header is not a header this format allows")]
    Header {
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// The header names another algorithm than [`crate::ALGORITHM`] (`none` included).
    #[error(
        "deployment token is signed with algorithm `{found}`, only `{}` is accepted",
        crate::ALGORITHM
    )]
    Algorithm {
        /// The header's `alg`.
        found: String,
    },
    /// The header has a `crit` parameter: extensions the signer says must be understood;
    /// this format has none.
    #[error("deployment token's header lists critical extensions (`crit`); this format has none")]
    CriticalHeader,
    /// The header's `typ` is not [`crate::TOKEN_TYPE`] (or is absent).
    #[error(
        "deployment token's type (`typ`) is {}, expected `{}`",
        found.as_deref().map_or_else(|| "absent".to_owned(), |t| format!("`{t}`")),
        crate::TOKEN_TYPE
    )]
    Type {
        /// The header's `typ`, if any.
        found: Option<String>,
    },
    /// The header has no `kid`: the device would not know which key to check.
    #[error("deployment token names no key (`kid`)")]
    MissingKeyId,
    /// The header's `kid` is not the thumbprint of any trusted key.
    #[error(
        "deployment token is signed by key `{kid}`, which is not trusted here (trusted: {})",
        if trusted.is_empty() { "none".to_owned() } else { trusted.join(", ") }
    )]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
        /// The key ids of the trusted keys.
        trusted: Vec<String>,
    },
    /// The signature segment does not decode to the 64 bytes of an Ed25519 signature.
    #[error("deployment token's signature is {found} bytes, an Ed25519 signature is 64")]
    SignatureLength {
        /// Decoded length.
        found: usize,
    },
    /// The signature does not verify (strict Ed25519: canonical encodings, no small-order
    /// points) with the key the header names.
    #[error("deployment token's signature does not verify with key `{kid}`")]
    Signature {
        /// The key it was checked with.
        kid: String,
        /// What the verifier said.
        source: ed25519_dalek::SignatureError,
    },
    /// The document's `format` is missing or another than [`crate::FORMAT`].
    #[error(
        "deployment document has format {}, this build reads format {expected}",
        found.map_or_else(|| "(none)".to_owned(), |f| f.to_string())
    )]
    Format {
        /// The document's `format`, if it has an integer one.
        found: Option<u64>,
        /// [`crate::FORMAT`].
        expected: u32,
    },
    /// The (signed) document is not shaped like a deployment: not JSON, a missing, unknown or
    /// repeated field, a wrong type, an unknown `action`.
    #[error("deployment document is not shaped like a deployment")]
    Document {
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A field has the right type but a value the format does not allow.
    #[error("deployment document's `{field}` is {value}: {rule}")]
    Field {
        /// The field's path, e.g. `app.sha256` or `uses.log`.
        field: String,
        /// The value, as JSON.
        value: String,
        /// What the format requires.
        rule: &'static str,
    },
    /// Encoding a document or header while signing.
    #[error("encoding the deployment token's {segment}")]
    Encode {
        /// Which segment.
        segment: Segment,
        /// What the JSON writer said.
        source: serde_json::Error,
    },
    /// Not an Ed25519 public key in SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
    #[error("not an Ed25519 public key in SubjectPublicKeyInfo PEM")]
    PublicKeyPem {
        /// What the decoder said.
        source: ed25519_dalek::pkcs8::spki::Error,
    },
    /// A public key is of small order: any signature would verify under it non-strictly.
    #[error("Ed25519 public key `{kid}` is weak (of small order)")]
    WeakPublicKey {
        /// Its key id.
        kid: String,
    },
    /// Not an Ed25519 private key in PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    #[error("not an Ed25519 private key in PKCS#8 PEM")]
    PrivateKeyPem {
        /// What the decoder said.
        source: ed25519_dalek::pkcs8::Error,
    },
    /// A key file could not be read.
    #[error("reading key file {}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A key file's contents were refused.
    #[error("key file {}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why its contents were refused.
        source: Box<DeploymentError>,
    },
    /// A verified deployment does not fit this device: every reason is listed.
    #[error(
        "{} {serial} for slot `{slot}` refused: {}",
        if *remove { "removal" } else { "deployment" },
        reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Refused {
        /// The document's slot.
        slot: String,
        /// The document's serial.
        serial: u64,
        /// Whether it was a removal.
        remove: bool,
        /// Every reason, in a fixed order (system, slot, serial, routes by local name).
        reasons: Vec<Refusal>,
    },
    /// The module's size is not the deployment's `app.size`.
    #[error("module of app `{app}` is {found} bytes, the deployment says {expected}")]
    ModuleSize {
        /// The app's name.
        app: String,
        /// `app.size`.
        expected: u64,
        /// The module's size.
        found: u64,
    },
    /// The module's sha256 is not the deployment's `app.sha256`.
    #[error("module of app `{app}` has sha256 {found}, the deployment says {expected}")]
    ModuleHash {
        /// The app's name.
        app: String,
        /// `app.sha256`.
        expected: String,
        /// The module's sha256 (lower-case hex).
        found: String,
    },
}

/// A segment of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The protected header.
    Header,
    /// The payload: the deployment document.
    Payload,
    /// The signature.
    Signature,
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Segment::Header => "protected header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// One reason a verified deployment does not fit the device
/// ([`crate::check_against_device`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The document is for another system (`compatible`).
    #[error("it is for system `{document}`, this device is `{device}`")]
    OtherSystem {
        /// The document's `compatible`.
        document: String,
        /// The device's `compatible`.
        device: String,
    },
    /// The device's plan has no app slot of that name.
    #[error("this device has no app slot `{slot}`")]
    NoSuchSlot {
        /// The document's slot.
        slot: String,
    },
    /// The serial is not greater than the one last installed in the slot: a replayed or an
    /// older document.
    #[error("serial {serial} is not greater than the slot's installed serial {installed}")]
    Replay {
        /// The document's serial.
        serial: u64,
        /// The serial installed in the slot.
        installed: u64,
    },
    /// A route the app asks for is beyond the slot's `max_uses`.
    #[error("route `{local}`: {reason}")]
    Route {
        /// The route's local name.
        local: String,
        /// How it exceeds the slot (`AppSlot::admits`).
        reason: RouteBeyondSlot,
    },
}
