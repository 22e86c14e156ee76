//! The crate's one error type: a variant per step that can fail, carrying what that step
//! worked on. Display never repeats a variant's source; `error_chain` prints the chain.

use std::path::PathBuf;

/// Why an update manifest, its signature, a key, a key file or the twin's desired
/// `deviceUpdate` was refused.
#[derive(Debug, thiserror::Error)]
pub enum OsUpdateError {
    /// The manifest is longer than [`crate::manifest::MAX_MANIFEST_BYTES`]; nothing of it
    /// was read.
    #[error("update manifest is {found} bytes, more than the {max} a manifest may have")]
    ManifestSize {
        /// Its length in bytes.
        found: usize,
        /// [`crate::manifest::MAX_MANIFEST_BYTES`].
        max: usize,
    },
    /// The manifest nests deeper than [`crate::manifest::MAX_NESTING`]; it was not parsed.
    #[error("update manifest nests deeper than {max} levels")]
    ManifestNesting {
        /// [`crate::manifest::MAX_NESTING`].
        max: usize,
    },
    /// The manifest is not JSON shaped like an ADU update manifest: a missing field, a
    /// wrong type, a repeated key.
    #[error("update manifest is not shaped like an ADU update manifest")]
    ManifestJson {
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// The manifest's `manifestVersion` is not [`crate::manifest::MANIFEST_VERSION`].
    #[error(
        "update manifest has manifestVersion `{found}`, this device reads version `{}`",
        crate::manifest::MANIFEST_VERSION
    )]
    ManifestVersion {
        /// The manifest's `manifestVersion`.
        found: String,
    },
    /// A detached ("mini") manifest, which names a file holding the real one: not
    /// supported (a testudo manifest is a few hundred bytes).
    #[error("update manifest is detached (its content is in file `{file_id}`); not supported")]
    ManifestDetached {
        /// Its `detachedManifestFileId`.
        file_id: String,
    },
    /// A field has the right type but a value the manifest may not have.
    #[error("update manifest's `{field}` is {value}: {rule}")]
    ManifestField {
        /// The field's path, e.g. `files.bundle.hashes.sha256`.
        field: String,
        /// The value (or a description of it).
        value: String,
        /// What is required.
        rule: &'static str,
    },
    /// A step names a file id the manifest's `files` does not have.
    #[error("update manifest's step {step} names file `{file_id}`, which `files` does not have")]
    UnknownFileId {
        /// The step's index in `instructions.steps`.
        step: usize,
        /// The file id.
        file_id: String,
    },
    /// A step for [`crate::manifest::HANDLER`] names another number of files than one.
    #[error(
        "update manifest's step {step} ({}) names {found} files, exactly 1 is needed",
        crate::manifest::HANDLER
    )]
    StepFiles {
        /// The step's index.
        step: usize,
        /// How many files it names.
        found: usize,
    },
    /// A step has a handler this device does not have.
    #[error(
        "update manifest's step {step} is for handler `{handler}`; this device has only `{}`",
        crate::manifest::HANDLER
    )]
    UnsupportedHandler {
        /// The step's index.
        step: usize,
        /// Its handler.
        handler: String,
    },
    /// The manifest has no step for [`crate::manifest::HANDLER`], or more than one.
    #[error(
        "update manifest has {found} steps for handler `{}`, exactly 1 is needed",
        crate::manifest::HANDLER
    )]
    BundleSteps {
        /// How many it has.
        found: usize,
    },
    /// The bundle step has no (or an empty) `handlerProperties.installedCriteria`: the
    /// version the bundle installs, which the device compares with the running one.
    #[error("update manifest's step {step} has no installedCriteria (the bundle's version)")]
    MissingInstalledCriteria {
        /// The step's index.
        step: usize,
    },

    /// The signature is longer than [`crate::signature::MAX_SIGNATURE_BYTES`]; nothing of it
    /// was read.
    #[error("update manifest signature is {found} bytes, more than the {max} it may have")]
    SignatureSize {
        /// Its length.
        found: usize,
        /// [`crate::signature::MAX_SIGNATURE_BYTES`].
        max: usize,
    },
    /// A JWS is not three dot-separated segments (compact serialization).
    #[error("{jws} has {found} segment(s) between dots, a compact JWS has 3")]
    Segments {
        /// Which JWS.
        jws: Jws,
        /// How many segments there are.
        found: usize,
    },
    /// A segment of a JWS is not unpadded base64url.
    #[error("{jws}'s {segment} is not unpadded base64url")]
    Base64 {
        /// Which JWS.
        jws: Jws,
        /// Which segment.
        segment: Segment,
        /// What the decoder said.
        source: base64::DecodeError,
    },
    /// A JSON segment of a JWS nests deeper than [`crate::signature::MAX_NESTING`].
    #[error("{jws}'s {segment} nests deeper than {max} levels")]
    Nesting {
        /// Which JWS.
        jws: Jws,
        /// Which segment.
        segment: Segment,
        /// [`crate::signature::MAX_NESTING`].
        max: usize,
    },
    /// A protected header is not a JSON object with a string `alg` (and, in the signature,
    /// a string `sjwk`; in the signing key token, a string `kid`), each at most once.
    #[error("{jws}'s protected header is not a JOSE header of the expected shape")]
    Header {
        /// Which JWS.
        jws: Jws,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A header names another algorithm than [`crate::ALGORITHM`] (`none`
    /// and HMAC included).
    #[error(
        "{jws} is signed with algorithm `{found}`, only `{}` is accepted",
        crate::ALGORITHM
    )]
    Algorithm {
        /// Which JWS.
        jws: Jws,
        /// The header's `alg`.
        found: String,
    },
    /// A header has a `crit` parameter: extensions the signer says must be understood;
    /// ADU's signatures have none.
    #[error("{jws}'s header lists critical extensions (`crit`); none are understood here")]
    CriticalHeader {
        /// Which JWS.
        jws: Jws,
    },
    /// The signature's header has no `sjwk`: the signing key, signed by a root key.
    #[error("update manifest signature carries no signing key (`sjwk`)")]
    MissingSigningKey,
    /// The signing key token's header has no `kid`: the device would not know which root
    /// key to check it with.
    #[error("signing key token (`sjwk`) names no root key (`kid`)")]
    MissingKeyId,
    /// The signing key token is signed by a key that is not among the device's root keys.
    #[error(
        "signing key token (`sjwk`) is signed by root key `{kid}`, which is not trusted here \
         (trusted: {})",
        if trusted.is_empty() { "none".to_owned() } else { trusted.join(", ") }
    )]
    UnknownRootKey {
        /// The token's `kid`.
        kid: String,
        /// The key ids of the device's root keys.
        trusted: Vec<String>,
    },
    /// A signature is not as long as the key's modulus (RFC 7518 section 3.3).
    #[error("{jws}'s signature is {found} bytes, key `{kid}` makes signatures of {expected}")]
    SignatureLength {
        /// Which JWS.
        jws: Jws,
        /// The key it was to be checked with.
        kid: String,
        /// The key's modulus length in bytes.
        expected: usize,
        /// The decoded signature's length.
        found: usize,
    },
    /// A signature does not verify (RSASSA-PKCS1-v1_5 with SHA-256) with the key named.
    #[cfg(feature = "crypto")]
    #[error("{jws}'s signature does not verify with key `{kid}`")]
    Signature {
        /// Which JWS.
        jws: Jws,
        /// The key it was checked with.
        kid: String,
        /// What OpenSSL said, if it did more than say no.
        source: Option<openssl::error::ErrorStack>,
    },
    /// The signing key token's payload is not a JSON Web Key.
    #[error("signing key token (`sjwk`)'s payload is not a JSON Web Key")]
    SigningJwk {
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A JWK is not a key this crate accepts.
    #[error("{role} JWK `{}`: {reason}", kid.as_deref().unwrap_or("(no kid)"))]
    Jwk {
        /// Which key.
        role: KeyRole,
        /// The JWK's `kid`, if any.
        kid: Option<String>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// OpenSSL refused a JWK's RSA components.
    #[cfg(feature = "crypto")]
    #[error("{role} JWK `{}` is not an RSA public key", kid.as_deref().unwrap_or("(no kid)"))]
    JwkKey {
        /// Which key.
        role: KeyRole,
        /// The JWK's `kid`, if any.
        kid: Option<String>,
        /// What OpenSSL said.
        source: openssl::error::ErrorStack,
    },
    /// The signature's payload is not `{"sha256": "<base64 of 32 bytes>"}`.
    #[error("update manifest signature's payload is not {{\"sha256\": <base64 of 32 bytes>}}")]
    SignedHash {
        /// What the JSON parser said, when it was not JSON of that shape.
        source: Option<serde_json::Error>,
    },
    /// The manifest's SHA-256 is not the one the signature covers: the manifest was changed.
    #[error("update manifest's sha256 is {found}, the signature covers {signed}")]
    ManifestHash {
        /// The signed hash (base64).
        signed: String,
        /// The manifest's hash (base64).
        found: String,
    },

    /// A key is not an RSA key.
    #[error("{what} is a {found} key, an RSA key is needed")]
    KeyType {
        /// Which key.
        what: &'static str,
        /// Its type, as OpenSSL names it.
        found: String,
    },
    /// An RSA key's size or exponent is outside what a device accepts.
    #[error("{what} is refused: {reason}")]
    KeyStrength {
        /// Which key.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The root key set (JWKS) is longer than [`crate::signature::MAX_JWKS_BYTES`].
    #[error("root key set is {found} bytes, more than the {max} it may have")]
    JwksSize {
        /// Its length.
        found: usize,
        /// [`crate::signature::MAX_JWKS_BYTES`].
        max: usize,
    },
    /// The root key set is not a JWK set (`{"keys": [...]}`, RFC 7517 section 5).
    #[error("root key set is not a JWK set")]
    Jwks {
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// The root key set has no key, or more than [`crate::signature::MAX_ROOT_KEYS`].
    #[cfg(feature = "crypto")]
    #[error(
        "root key set has {found} keys, 1 to {} are accepted",
        crate::signature::MAX_ROOT_KEYS
    )]
    RootKeyCount {
        /// How many it has.
        found: usize,
    },
    /// Two root keys have the same key id.
    #[error("root key set has key id `{kid}` twice")]
    DuplicateRootKey {
        /// The key id.
        kid: String,
    },
    /// OpenSSL failed to make, encode or use a key.
    #[cfg(feature = "crypto")]
    #[error("{what}")]
    Crypto {
        /// What was being done.
        what: &'static str,
        /// What OpenSSL said.
        source: openssl::error::ErrorStack,
    },
    /// Encoding JSON while signing.
    #[error("encoding {what}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// What the JSON writer said.
        source: serde_json::Error,
    },
    /// A key file could not be read.
    #[error("reading key file {}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A key file or the keys directory could not be written.
    #[error("writing {}", path.display())]
    WriteKey {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A key file to create exists already; key files are never overwritten.
    #[error("key file {} exists already; refusing to overwrite it", path.display())]
    KeyExists {
        /// The file.
        path: PathBuf,
    },
    /// A key file's contents were refused.
    #[error("key file {}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why its contents were refused.
        source: Box<OsUpdateError>,
    },

    /// The twin's desired `deviceUpdate.service` has a field of the wrong type or value.
    #[error("desired deviceUpdate.service's `{field}` is refused: {rule}")]
    Desired {
        /// The field's path under `service`, e.g. `workflow.id`.
        field: String,
        /// What is required.
        rule: &'static str,
    },
    /// A desired string is longer than it may be; it was not copied.
    #[error("desired deviceUpdate.service's `{field}` is {found} bytes, more than {max}")]
    DesiredSize {
        /// The field's path under `service`.
        field: String,
        /// Its length.
        found: usize,
        /// The bound.
        max: usize,
    },
}

/// Which of the two compact JWS of an ADU signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jws {
    /// `updateManifestSignature`: signed by the signing key, over the manifest's hash.
    ManifestSignature,
    /// Its header's `sjwk`: signed by a root key, over the signing key's JWK.
    SigningKey,
}

impl std::fmt::Display for Jws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Jws::ManifestSignature => "update manifest signature",
            Jws::SigningKey => "signing key token (`sjwk`)",
        })
    }
}

/// A segment of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The protected header.
    Header,
    /// The payload.
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

/// Which key a JWK is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// A root key of the device (its JWKS).
    Root,
    /// The signing key carried in `sjwk`.
    Signing,
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyRole::Root => "root key",
            KeyRole::Signing => "signing key",
        })
    }
}
