//! Shared access signature (SAS) tokens as IoT Hub and DPS expect them:
//! `SharedAccessSignature sr={enc(uri)}&sig={enc(b64(HMAC-SHA256(key, enc(uri) + "\n" + se)))}&se={se}[&skn={name}]`,
//! where `enc` is percent-encoding of everything but RFC 3986 unreserved characters (what
//! Microsoft's Python SDK does with `urllib.parse.quote(s, safe="")`).
//!
//! The HMAC is computed by a [`SasSigner`]: a software key here, or a key held in the TPM
//! ([`crate::tpm::TpmHmacSigner`]) so the agent never sees it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{AgentError, Result};

/// Something that computes HMAC-SHA256 with the device's key. Blocking (a TPM call takes a few
/// milliseconds); the agent calls it from a blocking thread, or inline when
/// [`crate::AgentConfig::sign_inline`] is set (the agent component).
pub trait SasSigner: Send + Sync {
    /// Returns HMAC-SHA256(key, message).
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32]>;
}

/// A key held in process memory (for development, tests and the 1,000-device benchmark; real
/// devices use the TPM signer).
#[derive(Clone)]
pub struct SoftwareKey {
    key: Vec<u8>,
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SoftwareKey(<redacted>)")
    }
}

impl SoftwareKey {
    /// Decodes a base64 key (as found in connection strings). `identity` names it in errors.
    pub fn from_base64(key: &str, identity: &str) -> Result<Self> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|source| AgentError::DecodeKey {
                identity: identity.to_string(),
                source,
            })?;
        Ok(Self { key })
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// The DPS enrollment-group derived device key: `b64(HMAC-SHA256(group key, registration id))`.
    pub fn derive_device_key(&self, registration_id: &str) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(hmac(&self.key, registration_id.as_bytes()))
    }
}

impl SasSigner for SoftwareKey {
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32]> {
        Ok(hmac(&self.key, message))
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for Hmac<Sha256>.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC is defined for every key length (RFC 2104 hashes long keys, pads short ones).
    unreachable!("HMAC-SHA256 accepts keys of any length")
}

/// A built token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// The full `SharedAccessSignature ...` string (the MQTT password).
    pub token: String,
    /// Expiry, seconds since the Unix epoch.
    pub expiry: u64,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// Builds a SAS token for `resource_uri` expiring at `expiry` (Unix seconds).
pub fn build_token(
    resource_uri: &str,
    key_name: Option<&str>,
    expiry: u64,
    signer: &dyn SasSigner,
) -> Result<SasToken> {
    let encoded_uri = percent_encode(resource_uri);
    let string_to_sign = format!("{encoded_uri}\n{expiry}");
    let mac = signer
        .hmac_sha256(string_to_sign.as_bytes())
        .map_err(|source| AgentError::SignSas {
            resource: resource_uri.to_string(),
            source: Box::new(source),
        })?;
    let signature = percent_encode(&base64::engine::general_purpose::STANDARD.encode(mac));
    let mut token = format!("SharedAccessSignature sr={encoded_uri}&sig={signature}&se={expiry}");
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(&percent_encode(name));
    }
    Ok(SasToken { token, expiry })
}

/// Builds a token valid for `ttl` from now, on a blocking thread (the signer may be a TPM).
pub async fn build_token_now(
    resource_uri: String,
    key_name: Option<String>,
    ttl: Duration,
    signer: Arc<dyn SasSigner>,
) -> Result<SasToken> {
    let expiry = unix_now().saturating_add(ttl.as_secs().max(1));
    let resource = resource_uri.clone();
    tokio::task::spawn_blocking(move || {
        build_token(&resource_uri, key_name.as_deref(), expiry, signer.as_ref())
    })
    .await
    .unwrap_or_else(|_| Err(AgentError::SignerThread { resource }))
}

/// Share of a token's remaining lifetime after which the agent renews it.
const RENEW_AFTER: f64 = 0.8;

/// How long after `now` a token expiring at `expiry` (Unix seconds, its `se`) is renewed: once
/// 80 % of the time left until that expiry has passed. Measured from the expiry the hub
/// enforces, not from the nominal lifetime: `se` is whole seconds, so a 2 s token made at
/// second T.9 expires 1.1 s later, and the time to sign and connect has passed too.
pub fn renewal_delay(expiry: u64, now: SystemTime) -> Duration {
    (UNIX_EPOCH + Duration::from_secs(expiry))
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        .mul_f64(RENEW_AFTER)
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Percent-encodes every byte that is not an RFC 3986 unreserved character.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_80_percent_of_the_time_left_until_the_tokens_expiry() {
        let at = |secs: f64| UNIX_EPOCH + Duration::from_secs_f64(secs);
        // A 2 s token made at 998.9 has `se` = 1000: 1.1 s left, renewed after 0.88 s
        // (not 1.6 s, which would be after the hub ends it).
        let delay = renewal_delay(1_000, at(998.9));
        assert!((delay.as_secs_f64() - 0.88).abs() < 1e-6, "{delay:?}");
        assert_eq!(
            renewal_delay(1_000, at(998.0)),
            Duration::from_millis(1_600)
        );
        // Expired already (or the clock moved): renew at once.
        assert_eq!(renewal_delay(1_000, at(1_000.5)), Duration::ZERO);
    }

    // Vectors produced by Microsoft's official Python device SDK (azure-iot-device 2.x,
    // `RenewableSasToken` with `SymmetricKeySigningMechanism`, expiry pinned to 1700000000).
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn token(uri: &str, skn: Option<&str>) -> String {
        let key = SoftwareKey::from_base64(KEY, "test").unwrap();
        build_token(uri, skn, 1_700_000_000, &key).unwrap().token
    }

    #[test]
    fn device_token_matches_the_official_sdk() {
        assert_eq!(
            token("myhub.azure-devices.net/devices/device-01", None),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice-01\
             &sig=1gLIiv7O5oZoFOMdYk5vfd2QzHOYiYrRYJ3pqzyCkq0%3D&se=1700000000"
        );
    }

    #[test]
    fn reserved_characters_and_case_are_kept_and_encoded_like_the_sdk() {
        assert_eq!(
            token("MyHub.azure-devices.net/devices/Gate way+1", None),
            "SharedAccessSignature sr=MyHub.azure-devices.net%2Fdevices%2FGate%20way%2B1\
             &sig=8a1CQ4V%2BXWupQYmb9ivEmL1uSo6HA3Ui8PF7CcIxWbE%3D&se=1700000000"
        );
    }

    #[test]
    fn dps_token_carries_the_key_name() {
        assert_eq!(
            token("0ne00000A0A/registrations/device-01", Some("registration")),
            "SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fdevice-01\
             &sig=k8yirHT5vSH9FN%2BoVWKHx774PQr%2FeGJAzalEeyVooAo%3D&se=1700000000&skn=registration"
        );
    }

    #[test]
    fn group_key_derivation_matches_the_official_sdk() {
        let key = SoftwareKey::from_base64(KEY, "group").unwrap();
        assert_eq!(
            key.derive_device_key("device-01"),
            "DZId1OD1INSsTr8IT3AfizrjFDjJ9RNu9ollUb69aoQ="
        );
    }

    #[test]
    fn bad_base64_is_a_clear_error() {
        let err = SoftwareKey::from_base64("not base64!", "dev").unwrap_err();
        assert!(matches!(err, AgentError::DecodeKey { .. }));
    }
}
