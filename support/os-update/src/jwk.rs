//! RSA public keys as JSON Web Keys (RFC 7517; members of RFC 7518 section 6.3): reading one
//! from untrusted JSON into an OpenSSL key, and writing one. Every RSA key this crate takes
//! passes [`check_rsa`]: a modulus of [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits and a small
//! odd public exponent.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::bn::BigNum;
use openssl::pkey::{HasPublic, Id, PKey, Public};
use openssl::rsa::Rsa;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::error::{KeyRole, OsUpdateError};
use crate::signature::ALGORITHM;

/// Fewest bits of an RSA modulus accepted (NIST SP 800-57: 2048 bits for 112-bit security).
pub const MIN_RSA_BITS: u32 = 2048;

/// Most bits of an RSA modulus accepted: bounds the work an untrusted key can ask for.
pub const MAX_RSA_BITS: u32 = 4096;

/// A JWK as read: the members this crate looks at, others ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct JwkIn {
    pub(crate) kty: String,
    #[serde(default)]
    pub(crate) n: Option<String>,
    #[serde(default)]
    pub(crate) e: Option<String>,
    #[serde(default)]
    pub(crate) alg: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default, rename = "use")]
    pub(crate) key_use: Option<String>,
    /// A private member: present at all means a private key was published.
    #[serde(default)]
    pub(crate) d: Option<IgnoredAny>,
}

/// A public RSA JWK as written: `{"kty":"RSA","kid","n","e","alg":"RS256"}`.
#[derive(Debug, Serialize)]
pub(crate) struct JwkOut<'a> {
    pub(crate) kty: &'static str,
    pub(crate) kid: &'a str,
    pub(crate) n: String,
    pub(crate) e: String,
    pub(crate) alg: &'static str,
}

impl<'a> JwkOut<'a> {
    /// `key` under `kid`.
    pub(crate) fn new<T: HasPublic>(
        key: &PKey<T>,
        kid: &'a str,
        what: &'static str,
    ) -> Result<JwkOut<'a>, OsUpdateError> {
        let (n, e) = components(key, what)?;
        Ok(JwkOut {
            kty: "RSA",
            kid,
            n,
            e,
            alg: ALGORITHM,
        })
    }
}

/// The key `jwk` describes, refused unless it is an RSA public key for RS256 signatures
/// that passes [`check_rsa`].
pub(crate) fn public_key(jwk: &JwkIn, role: KeyRole) -> Result<PKey<Public>, OsUpdateError> {
    let refuse = |reason| OsUpdateError::Jwk {
        role,
        kid: jwk.kid.clone(),
        reason,
    };
    if jwk.kty != "RSA" {
        return Err(refuse("not an RSA key (`kty` is not \"RSA\")"));
    }
    if jwk.alg.as_deref().is_some_and(|alg| alg != ALGORITHM) {
        return Err(refuse("its `alg` is not RS256"));
    }
    if jwk
        .key_use
        .as_deref()
        .is_some_and(|key_use| key_use != "sig")
    {
        return Err(refuse("its `use` is not \"sig\""));
    }
    if jwk.d.is_some() {
        return Err(refuse("it carries a private key (`d`)"));
    }
    let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
        return Err(refuse("it lacks the modulus `n` or the exponent `e`"));
    };
    let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) else {
        return Err(refuse("its `n` or `e` is not unpadded base64url"));
    };
    let openssl_error = |source| OsUpdateError::JwkKey {
        role,
        kid: jwk.kid.clone(),
        source,
    };
    let n = BigNum::from_slice(&n).map_err(openssl_error)?;
    let e = BigNum::from_slice(&e).map_err(openssl_error)?;
    if let Some(reason) = weakness(&n, &e) {
        return Err(refuse(reason));
    }
    let rsa = Rsa::from_public_components(n, e).map_err(openssl_error)?;
    PKey::from_rsa(rsa).map_err(openssl_error)
}

/// Refuses a key that is not RSA, or whose modulus or exponent is outside the bounds.
pub(crate) fn check_rsa<T: HasPublic>(
    key: &PKey<T>,
    what: &'static str,
) -> Result<(), OsUpdateError> {
    let rsa = rsa(key, what)?;
    match weakness(rsa.n(), rsa.e()) {
        Some(reason) => Err(OsUpdateError::KeyStrength { what, reason }),
        None => Ok(()),
    }
}

/// `key`'s modulus and exponent, unpadded base64url of their minimal big-endian bytes (as a
/// JWK has them).
pub(crate) fn components<T: HasPublic>(
    key: &PKey<T>,
    what: &'static str,
) -> Result<(String, String), OsUpdateError> {
    let rsa = rsa(key, what)?;
    Ok((
        URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
        URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
    ))
}

fn rsa<T: HasPublic>(key: &PKey<T>, what: &'static str) -> Result<Rsa<T>, OsUpdateError> {
    if key.id() != Id::RSA {
        return Err(OsUpdateError::KeyType {
            what,
            found: key_type_name(key.id()),
        });
    }
    key.rsa()
        .map_err(|source| OsUpdateError::Crypto { what, source })
}

/// Why a modulus and exponent are refused, if they are.
fn weakness(n: &openssl::bn::BigNumRef, e: &openssl::bn::BigNumRef) -> Option<&'static str> {
    let bits = n.num_bits().unsigned_abs();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Some("its modulus is not 2048 to 4096 bits long");
    }
    let exponent_bits = e.num_bits().unsigned_abs();
    if !(2..=32).contains(&exponent_bits) || !e.is_bit_set(0) {
        return Some("its public exponent is not an odd number from 3 to 2^32-1");
    }
    None
}

fn key_type_name(id: Id) -> String {
    match id {
        Id::EC => "EC".to_owned(),
        Id::ED25519 => "Ed25519".to_owned(),
        Id::ED448 => "Ed448".to_owned(),
        Id::DSA => "DSA".to_owned(),
        Id::DH => "DH".to_owned(),
        Id::HMAC => "HMAC".to_owned(),
        Id::RSA_PSS => "RSA-PSS".to_owned(),
        other => format!("non-RSA (OpenSSL id {})", other.as_raw()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: serde_json::Value) -> JwkIn {
        serde_json::from_value(json).unwrap()
    }

    /// RFC 7517 appendix A.1's example RSA key (2048 bits, e = 65537).
    const RFC7517_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn an_rsa_jwk_becomes_a_key_and_writes_back_the_same() {
        let key = public_key(
            &jwk(serde_json::json!({"kty": "RSA", "n": RFC7517_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"})),
            KeyRole::Signing,
        )
        .unwrap();
        let out = JwkOut::new(&key, "2011-04-29", "key").unwrap();
        assert_eq!(out.n, RFC7517_N);
        assert_eq!(out.e, "AQAB");
    }

    #[test]
    fn other_and_weak_keys_are_refused_naming_the_reason() {
        let refused = |json| match public_key(&jwk(json), KeyRole::Root) {
            Err(OsUpdateError::Jwk { reason, role, .. }) => {
                assert_eq!(role, KeyRole::Root);
                reason
            }
            other => panic!("unexpected {other:?}"),
        };
        assert!(refused(serde_json::json!({"kty": "EC", "crv": "P-256"})).contains("not an RSA"));
        assert!(refused(serde_json::json!({"kty": "oct", "k": "AAAA"})).contains("not an RSA"));
        assert!(refused(
            serde_json::json!({"kty": "RSA", "n": RFC7517_N, "e": "AQAB", "alg": "HS256"})
        )
        .contains("alg"));
        assert!(refused(
            serde_json::json!({"kty": "RSA", "n": RFC7517_N, "e": "AQAB", "use": "enc"})
        )
        .contains("use"));
        assert!(refused(
            serde_json::json!({"kty": "RSA", "n": RFC7517_N, "e": "AQAB", "d": "AQAB"})
        )
        .contains("private"));
        assert!(refused(serde_json::json!({"kty": "RSA", "e": "AQAB"})).contains("lacks"));
        assert!(
            refused(serde_json::json!({"kty": "RSA", "n": "a+b/", "e": "AQAB"}))
                .contains("base64url")
        );
        // 1024 bits: too short.
        let short = URL_SAFE_NO_PAD.encode([0xc5; 128]);
        assert!(
            refused(serde_json::json!({"kty": "RSA", "n": short, "e": "AQAB"})).contains("2048")
        );
        // e = 1 and an even e: refused.
        assert!(
            refused(serde_json::json!({"kty": "RSA", "n": RFC7517_N, "e": "AQ"}))
                .contains("exponent")
        );
        assert!(
            refused(serde_json::json!({"kty": "RSA", "n": RFC7517_N, "e": "AQAA"}))
                .contains("exponent")
        );
        // An exponent of 2^40 + 1: not small.
        let big_e = URL_SAFE_NO_PAD.encode([1, 0, 0, 0, 0, 1]);
        assert!(
            refused(serde_json::json!({"kty": "RSA", "n": RFC7517_N, "e": big_e}))
                .contains("exponent")
        );
    }

    #[test]
    fn a_non_rsa_key_is_named_by_type() {
        let key = PKey::generate_ed25519().unwrap();
        assert!(matches!(
            check_rsa(&key, "signing key"),
            Err(OsUpdateError::KeyType { found, .. }) if found == "Ed25519"
        ));
    }
}
