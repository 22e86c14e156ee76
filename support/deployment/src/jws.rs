//! The token: a deployment document in a JWS compact serialization (RFC 7515) signed with
//! Ed25519 (`alg` `EdDSA`, RFC 8037), header `{"alg":"EdDSA","kid":<key id>,"typ":
//! "testudo-deployment+jws"}`.
//!
//! [`verify`] reads a token in this order, and refuses at the first step that fails: size,
//! segments, header (base64url, nesting, shape, `alg`, `crit`, `typ`, `kid` among the
//! trusted keys), signature (base64url, length, strict Ed25519 over the first two segments
//! as they are), and only then the payload (base64url, nesting, format, shape, field rules).
//! No payload byte is read before the signature is verified.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize};

use crate::document::{nesting_within, Deployment};
use crate::error::{DeploymentError, Segment};
use crate::keys::key_id;
use crate::{ALGORITHM, MAX_NESTING, MAX_TOKEN_BYTES, TOKEN_TYPE};

/// A deployment whose token verified with a trusted key. Only [`verify`] makes one, so a
/// function taking it (`check_against_device`) never sees an unsigned document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDeployment {
    deployment: Deployment,
    kid: String,
}

impl VerifiedDeployment {
    /// The document.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The key id of the key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The document, giving up the proof that it was verified.
    pub fn into_deployment(self) -> Deployment {
        self.deployment
    }
}

/// The protected header we write.
#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// The protected header we read: these parameters only, each at most once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// Present at all (whatever its value, `null` included).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// Signs `deployment` with `key`: a compact JWS whose `kid` is [`key_id`] of the key's public
/// half. The document is checked first ([`Deployment::validate`]) and the token must fit
/// [`MAX_TOKEN_BYTES`], so what this signs a device can read. Ed25519 is deterministic: the
/// same document and key always give the same token.
pub fn sign(deployment: &Deployment, key: &SigningKey) -> Result<String, DeploymentError> {
    deployment.validate()?;
    let kid = key_id(&key.verifying_key());
    let header = serde_json::to_vec(&HeaderOut {
        alg: ALGORITHM,
        kid: &kid,
        typ: TOKEN_TYPE,
    })
    .map_err(|source| DeploymentError::Encode {
        segment: Segment::Header,
        source,
    })?;
    let payload = serde_json::to_vec(deployment).map_err(|source| DeploymentError::Encode {
        segment: Segment::Payload,
        source,
    })?;
    let token = compact(&header, &payload, key);
    if token.len() > MAX_TOKEN_BYTES {
        return Err(DeploymentError::TokenSize {
            found: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    Ok(token)
}

/// `BASE64URL(header).BASE64URL(payload).BASE64URL(signature over the first two)`, the bytes
/// as they are, unchecked: for tests and fuzzing, which make tokens [`sign`] refuses to.
pub fn compact(header: &[u8], payload: &[u8], key: &SigningKey) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    token
}

/// Verifies `token` with the key among `trusted` whose key id its header names, then reads
/// the document (see the module documentation for the order of the steps).
pub fn verify(
    token: &str,
    trusted: &[VerifyingKey],
) -> Result<VerifiedDeployment, DeploymentError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(DeploymentError::TokenSize {
            found: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = segments[..] else {
        return Err(DeploymentError::Segments {
            found: segments.len(),
        });
    };

    let header = decode(Segment::Header, header_b64)?;
    if !nesting_within(&header, MAX_NESTING) {
        return Err(DeploymentError::Nesting {
            segment: Segment::Header,
            max: MAX_NESTING,
        });
    }
    let header: HeaderIn =
        serde_json::from_slice(&header).map_err(|source| DeploymentError::Header { source })?;
    if header.alg != ALGORITHM {
        return Err(DeploymentError::Algorithm { found: header.alg });
    }
    if header.crit {
        return Err(DeploymentError::CriticalHeader);
    }
    if header.typ.as_deref() != Some(TOKEN_TYPE) {
        return Err(DeploymentError::Type { found: header.typ });
    }
    let kid = header.kid.ok_or(DeploymentError::MissingKeyId)?;
    let key = trusted
        .iter()
        .find(|key| key_id(key) == kid)
        .ok_or_else(|| DeploymentError::UnknownKey {
            kid: kid.clone(),
            trusted: trusted.iter().map(key_id).collect(),
        })?;

    let signature = decode(Segment::Signature, signature_b64)?;
    let signature: [u8; 64] =
        signature
            .as_slice()
            .try_into()
            .map_err(|_| DeploymentError::SignatureLength {
                found: signature.len(),
            })?;
    // The first two segments as they are in the token (three segments: the last dot ends
    // them).
    let signing_input = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    key.verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|source| DeploymentError::Signature {
            kid: kid.clone(),
            source,
        })?;

    let payload = decode(Segment::Payload, payload_b64)?;
    let deployment = Deployment::from_payload(&payload)?;
    Ok(VerifiedDeployment { deployment, kid })
}

/// Unpadded base64url, strictly: no padding, no whitespace, no stray bits in the last
/// character (so each byte string has exactly one encoding).
fn decode(segment: Segment, text: &str) -> Result<Vec<u8>, DeploymentError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|source| DeploymentError::Base64 { segment, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 appendix A.4: the example signature over `Example of Ed25519 signing` with
    /// header `{"alg":"EdDSA"}`: the compact form is computed as the RFC does.
    #[test]
    fn compact_signing_matches_rfc_8037_example() {
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = SigningKey::from_bytes(&d.try_into().unwrap());
        assert_eq!(
            compact(br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing", &key),
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
             hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }
}
