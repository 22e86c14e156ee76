//! Shared Access Signature tokens exactly as IoT Hub and DPS use them:
//! `SharedAccessSignature sr={urlencoded resource}&sig={urlencoded base64 HMAC-SHA256}&se={expiry}[&skn={key name}]`,
//! the HMAC keyed with the base64-decoded key over `{sr as sent}\n{se}`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

/// Characters percent-encoded in SAS fields: everything but RFC 3986 unreserved.
const SAS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed SAS token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as it appears in the token (percent-encoded): what was signed.
    pub signed_resource: String,
    /// `sr` decoded.
    pub resource: String,
    /// `sig` decoded: the base64 signature.
    pub signature: String,
    /// `se`: expiry, seconds since the Unix epoch.
    pub expiry: u64,
    /// `skn`: the policy (key) name, for service and DPS tokens.
    pub key_name: Option<String>,
}

/// Percent-encodes a value as the SDKs do (`urllib.parse.quote(v, safe="")`).
pub fn url_encode(value: &str) -> String {
    utf8_percent_encode(value, SAS_ENCODE).to_string()
}

/// Decodes a percent-encoded value; `None` if it is not UTF-8 afterwards.
pub fn url_decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

/// Parses a token; `None` if it is not of the SAS form (fields may come in any order).
pub fn parse(token: &str) -> Option<SasToken> {
    let fields = token.trim().strip_prefix("SharedAccessSignature ")?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for field in fields.split('&') {
        let (name, value) = field.split_once('=')?;
        let slot = match name {
            "sr" => &mut sr,
            "sig" => &mut sig,
            "se" => &mut se,
            "skn" => &mut skn,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let signed_resource = sr?.to_owned();
    Some(SasToken {
        resource: url_decode(&signed_resource)?,
        signed_resource,
        signature: url_decode(sig?)?,
        expiry: se?.parse().ok()?,
        key_name: skn.map(str::to_owned),
    })
}

fn mac(key_base64: &str) -> Option<Hmac<Sha256>> {
    let key = BASE64.decode(key_base64.trim()).ok()?;
    Hmac::<Sha256>::new_from_slice(&key).ok()
}

/// Base64 HMAC-SHA256 of `message` under the base64 `key`; `None` if the key is not base64.
pub fn sign(key_base64: &str, message: &str) -> Option<String> {
    let mut mac = mac(key_base64)?;
    mac.update(message.as_bytes());
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

/// Whether `token` was signed with `key_base64` (constant-time comparison). Accepts the
/// resource as sent and the canonical `urlencode(lowercase(resource))` form.
pub fn signature_matches(token: &SasToken, key_base64: &str) -> bool {
    let Ok(signature) = BASE64.decode(token.signature.as_bytes()) else {
        return false;
    };
    let canonical = url_encode(&token.resource.to_lowercase());
    [token.signed_resource.as_str(), canonical.as_str()]
        .iter()
        .any(|resource| {
            mac(key_base64).is_some_and(|mut mac| {
                mac.update(format!("{resource}\n{}", token.expiry).as_bytes());
                mac.verify_slice(&signature).is_ok()
            })
        })
}

/// Builds a token for `resource` (not yet encoded), valid until `expiry`.
pub fn generate(
    resource: &str,
    key_base64: &str,
    key_name: Option<&str>,
    expiry: u64,
) -> Option<String> {
    let signed_resource = url_encode(resource);
    let signature = sign(key_base64, &format!("{signed_resource}\n{expiry}"))?;
    let mut token = format!(
        "SharedAccessSignature sr={signed_resource}&sig={}&se={expiry}",
        url_encode(&signature)
    );
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(name);
    }
    Some(token)
}

/// DPS enrollment-group key derivation: `base64(HMAC-SHA256(b64dec(group key), registration id))`.
pub fn derive_device_key(group_key_base64: &str, registration_id: &str) -> Option<String> {
    sign(group_key_base64, registration_id)
}

/// A fresh random 32-byte key, base64-encoded (as IoT Hub generates).
pub fn random_key() -> String {
    BASE64.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtMzItYnl0ZXMtbG9uZw==";

    #[test]
    fn generated_token_verifies_and_wrong_key_does_not() {
        let token = generate("Hub.local/devices/dev1", KEY, None, 2_000_000_000).unwrap();
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.resource, "Hub.local/devices/dev1");
        assert_eq!(parsed.expiry, 2_000_000_000);
        assert!(signature_matches(&parsed, KEY));
        assert!(!signature_matches(&parsed, &random_key()));
        let mut tampered = parsed.clone();
        tampered.expiry += 1;
        assert!(!signature_matches(&tampered, KEY));
    }

    #[test]
    fn matches_python_sdk_reference_token() {
        // Produced by azure-iot-device 2.14 (SymmetricKeySigningMechanism, quote(uri, safe=''))
        // for this key, resource and expiry.
        let reference = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=U%2F8JRMgp8HLpWGGQmOM2N4ZPa1AtLO0IwCOjnYg%2BQsM%3D&se=1700000000";
        assert!(signature_matches(&parse(reference).unwrap(), KEY));
        assert_eq!(
            generate("localhost/devices/dev1", KEY, None, 1_700_000_000).unwrap(),
            reference
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for token in [
            "",
            "SharedAccessSignature",
            "SharedAccessSignature sr=a&sig=b",
            "SharedAccessSignature sr=a&sig=b&se=notanumber",
            "SharedAccessSignature sr=a&sr=a&sig=b&se=1",
            "Bearer sr=a&sig=b&se=1",
        ] {
            assert_eq!(parse(token), None, "{token}");
        }
    }
}
