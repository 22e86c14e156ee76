//! The service SAS token: `SharedAccessSignature sr={urlenc(resource)}&sig={urlenc(b64(
//! HMAC-SHA256(b64dec(key), urlenc(resource) + "\n" + expiry)))}&se={expiry}&skn={policy}`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

use crate::error::ServiceError;

/// Characters left as they are in a SAS token's parts (RFC 3986 unreserved).
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A token for `resource` (the hub's host name), signed with the policy's base64 `key`,
/// valid until `expiry` (Unix seconds).
pub fn service_token(
    resource: &str,
    key_name: &str,
    key: &str,
    expiry: u64,
) -> Result<String, ServiceError> {
    let encoded = utf8_percent_encode(resource, UNRESERVED).to_string();
    let key = BASE64
        .decode(key.trim())
        .map_err(|_| ServiceError::ConnectionString {
            field: "SharedAccessKey",
        })?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|_| ServiceError::ConnectionString {
            field: "SharedAccessKey",
        })?;
    mac.update(format!("{encoded}\n{expiry}").as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    Ok(format!(
        "SharedAccessSignature sr={encoded}&sig={}&se={expiry}&skn={}",
        utf8_percent_encode(&signature, UNRESERVED),
        utf8_percent_encode(key_name, UNRESERVED)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_sign_the_encoded_resource_and_expiry() {
        // Same inputs, same token; the signature is HMAC-SHA256 over "resource\nexpiry".
        let token = service_token(
            "myhub.azure-devices.net",
            "iothubowner",
            "a2V5",
            1_700_000_000,
        )
        .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"myhub.azure-devices.net\n1700000000");
        let expected = utf8_percent_encode(&BASE64.encode(mac.finalize().into_bytes()), UNRESERVED)
            .to_string();
        assert_eq!(
            token,
            format!(
                "SharedAccessSignature sr=myhub.azure-devices.net&sig={expected}&se=1700000000&skn=iothubowner"
            )
        );
        assert!(service_token("h", "p", "not base64!", 1).is_err());
    }
}
