//! ADU's manifest signature: the twin's `updateManifestSignature`, a compact JWS (RFC 7515)
//! signed RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 section 3.3) by a signing key,
//! whose header carries that key, itself signed by one of the device's root keys:
//!
//! ```text
//! updateManifestSignature = JWS( header  {"alg":"RS256","sjwk":<sjwk>},
//!                                payload {"sha256":"<base64 of SHA-256(updateManifest bytes)>"} )
//! sjwk                    = JWS( header  {"alg":"RS256","kid":"<root key id>"},
//!                                payload {"kty":"RSA","n","e","alg":"RS256","kid":"<signing key id>"} )
//! ```
//!
//! [`verify`] reads in this order and refuses at the first step that fails: sizes; the
//! signature's header (`alg` exactly RS256, no `crit`, an `sjwk`); the `sjwk` header (same,
//! and a `kid` among the device's [`RootKeys`]); the `sjwk` signature with that root key; the
//! signing key's JWK (RSA, 2048 to 4096 bits, small odd exponent); the manifest signature with
//! it; the signed hash against SHA-256 of the manifest's exact bytes; and only then
//! `manifest::parse`. Nothing of the manifest is parsed before every check passed. Unknown
//! header parameters are ignored (RFC 7515 section 4), `crit` is refused. HMAC and `none`
//! are refused by name: a public key is never used as an HMAC secret.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Padding;
use openssl::sign::{Signer, Verifier};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Jws, KeyRole, OsUpdateError, Segment};
use crate::json::nesting_within;
use crate::jwk::{self, JwkIn, JwkOut};
use crate::keys::key_id;
use crate::manifest::{self, ImportManifest, MAX_MANIFEST_BYTES};

pub use crate::{ALGORITHM, MAX_SIGNATURE_BYTES};

/// Deepest nesting of objects and arrays in a header or payload (`{}` is 1); ADU's are flat
/// objects.
pub const MAX_NESTING: usize = 4;

/// Most bytes of a root key set (JWKS).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Most keys in a root key set.
pub const MAX_ROOT_KEYS: usize = 16;

/// The device's root keys, by key id: what a signing key must be signed by.
#[derive(Clone)]
pub struct RootKeys {
    keys: BTreeMap<String, PKey<Public>>,
}

impl std::fmt::Debug for RootKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKeys")
            .field("kids", &self.kids())
            .finish()
    }
}

/// A JWK set as read.
#[derive(Deserialize)]
struct JwksIn {
    keys: Vec<JwkIn>,
}

/// A JWK set as written.
#[derive(Serialize)]
struct JwksOut<'a> {
    keys: Vec<JwkOut<'a>>,
}

impl RootKeys {
    /// Reads a JWK set (RFC 7517 section 5), `{"keys":[{"kty":"RSA","kid","n","e",
    /// "alg":"RS256"}]}`: 1 to [`MAX_ROOT_KEYS`] RSA keys, each under its `kid` (its RFC 7638
    /// thumbprint when it has none), no key id twice.
    pub fn from_jwks(bytes: &[u8]) -> Result<RootKeys, OsUpdateError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(OsUpdateError::JwksSize {
                found: bytes.len(),
                max: MAX_JWKS_BYTES,
            });
        }
        let set: JwksIn =
            serde_json::from_slice(bytes).map_err(|source| OsUpdateError::Jwks { source })?;
        if set.keys.is_empty() || set.keys.len() > MAX_ROOT_KEYS {
            return Err(OsUpdateError::RootKeyCount {
                found: set.keys.len(),
            });
        }
        let mut keys = BTreeMap::new();
        for jwk in &set.keys {
            let key = jwk::public_key(jwk, KeyRole::Root)?;
            let kid = match &jwk.kid {
                Some(kid) => kid.clone(),
                None => key_id(&key)?,
            };
            if keys.insert(kid.clone(), key).is_some() {
                return Err(OsUpdateError::DuplicateRootKey { kid });
            }
        }
        Ok(RootKeys { keys })
    }

    /// The JWK set of `keys` (key id, key), as [`RootKeys::from_jwks`] reads it: what an
    /// image carries. Every key must be an RSA key within the bounds a device accepts.
    pub fn to_jwks(keys: &[(String, PKey<Public>)]) -> Result<String, OsUpdateError> {
        let set = JwksOut {
            keys: keys
                .iter()
                .map(|(kid, key)| JwkOut::new(key, kid, "root key"))
                .collect::<Result<_, _>>()?,
        };
        for (_, key) in keys {
            jwk::check_rsa(key, "root key")?;
        }
        let mut text =
            serde_json::to_string_pretty(&set).map_err(|source| OsUpdateError::Encode {
                what: "the root key set",
                source,
            })?;
        text.push('\n');
        Ok(text)
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }
}

/// A manifest whose signature chain verified to one of the device's root keys. Only
/// [`verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The manifest.
    pub manifest: ImportManifest,
    /// The signing key's id (its JWK's `kid`, or its RFC 7638 thumbprint when it has none).
    pub signing_kid: String,
    /// The id of the root key that signed the signing key.
    pub root_kid: String,
}

/// What signs a manifest: a root key (whose public half a device trusts under `root_kid`)
/// and the signing key it vouches for.
pub struct SigningChain {
    /// The root key's id, as the device's JWK set names it.
    pub root_kid: String,
    /// The root key.
    pub root: PKey<Private>,
    /// The signing key's id (written into its JWK).
    pub signing_kid: String,
    /// The signing key.
    pub signing: PKey<Private>,
}

impl std::fmt::Debug for SigningChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningChain")
            .field("root_kid", &self.root_kid)
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

/// The headers as read: these parameters looked at, others ignored.
#[derive(Deserialize)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    sjwk: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    /// Present at all (whatever its value, `null` included).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The signature's payload.
#[derive(Serialize, Deserialize)]
struct SignedHash {
    sha256: String,
}

#[derive(Serialize)]
struct OuterHeaderOut<'a> {
    alg: &'static str,
    sjwk: &'a str,
}

#[derive(Serialize)]
struct SjwkHeaderOut<'a> {
    alg: &'static str,
    kid: &'a str,
}

/// One compact JWS, split and its header read.
struct Compact<'t> {
    jws: Jws,
    header: HeaderIn,
    payload_b64: &'t str,
    signature_b64: &'t str,
    /// The first two segments as they are (what is signed).
    signing_input: &'t str,
}

impl<'t> Compact<'t> {
    fn split(jws: Jws, token: &'t str) -> Result<Compact<'t>, OsUpdateError> {
        let segments: Vec<&str> = token.split('.').collect();
        let [header_b64, payload_b64, signature_b64] = segments[..] else {
            return Err(OsUpdateError::Segments {
                jws,
                found: segments.len(),
            });
        };
        let header = decode_json(jws, Segment::Header, header_b64)?;
        let header: HeaderIn = serde_json::from_slice(&header)
            .map_err(|source| OsUpdateError::Header { jws, source })?;
        if header.alg != ALGORITHM {
            return Err(OsUpdateError::Algorithm {
                jws,
                found: manifest::bounded_display(&header.alg),
            });
        }
        if header.crit {
            return Err(OsUpdateError::CriticalHeader { jws });
        }
        let signing_input = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
        Ok(Compact {
            jws,
            header,
            payload_b64,
            signature_b64,
            signing_input,
        })
    }

    /// Checks the signature with `key` (named `kid` in errors).
    fn verify_with(&self, key: &PKey<Public>, kid: &str) -> Result<(), OsUpdateError> {
        let signature = decode(self.jws, Segment::Signature, self.signature_b64)?;
        let expected = key.size();
        if signature.len() != expected {
            return Err(OsUpdateError::SignatureLength {
                jws: self.jws,
                kid: kid.to_owned(),
                expected,
                found: signature.len(),
            });
        }
        let failed = |source| OsUpdateError::Signature {
            jws: self.jws,
            kid: kid.to_owned(),
            source,
        };
        let verified = (|| {
            let mut verifier = Verifier::new(MessageDigest::sha256(), key)?;
            verifier.set_rsa_padding(Padding::PKCS1)?;
            verifier.verify_oneshot(&signature, self.signing_input.as_bytes())
        })()
        .map_err(|error| failed(Some(error)))?;
        if !verified {
            return Err(failed(None));
        }
        Ok(())
    }

    fn payload(&self) -> Result<Vec<u8>, OsUpdateError> {
        decode_json(self.jws, Segment::Payload, self.payload_b64)
    }
}

/// Verifies `update_manifest` (the twin's string, byte for byte) with `signature` (the
/// twin's `updateManifestSignature`) against the device's root keys, then parses the
/// manifest. See the module documentation for the order of the steps.
pub fn verify(
    update_manifest: &str,
    signature: &str,
    roots: &RootKeys,
) -> Result<VerifiedManifest, OsUpdateError> {
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(OsUpdateError::SignatureSize {
            found: signature.len(),
            max: MAX_SIGNATURE_BYTES,
        });
    }
    if update_manifest.len() > MAX_MANIFEST_BYTES {
        return Err(OsUpdateError::ManifestSize {
            found: update_manifest.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    let outer = Compact::split(Jws::ManifestSignature, signature)?;
    let sjwk = outer
        .header
        .sjwk
        .as_deref()
        .ok_or(OsUpdateError::MissingSigningKey)?;
    let inner = Compact::split(Jws::SigningKey, sjwk)?;
    let root_kid = inner
        .header
        .kid
        .clone()
        .ok_or(OsUpdateError::MissingKeyId)?;
    let root = roots
        .keys
        .get(&root_kid)
        .ok_or_else(|| OsUpdateError::UnknownRootKey {
            kid: manifest::bounded_display(&root_kid),
            trusted: roots.kids().into_iter().map(str::to_owned).collect(),
        })?;
    inner.verify_with(root, &root_kid)?;

    let jwk: JwkIn = serde_json::from_slice(&inner.payload()?)
        .map_err(|source| OsUpdateError::SigningJwk { source })?;
    let signing = jwk::public_key(&jwk, KeyRole::Signing)?;
    let signing_kid = match jwk.kid {
        Some(kid) => kid,
        None => key_id(&signing)?,
    };
    outer.verify_with(&signing, &signing_kid)?;

    let signed: SignedHash =
        serde_json::from_slice(&outer.payload()?).map_err(|source| OsUpdateError::SignedHash {
            source: Some(source),
        })?;
    let signed_hash = STANDARD
        .decode(&signed.sha256)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(OsUpdateError::SignedHash { source: None })?;
    let found = openssl::sha::sha256(update_manifest.as_bytes());
    if found != signed_hash {
        return Err(OsUpdateError::ManifestHash {
            signed: STANDARD.encode(signed_hash),
            found: STANDARD.encode(found),
        });
    }

    let manifest = manifest::parse(update_manifest.as_bytes())?;
    Ok(VerifiedManifest {
        manifest,
        signing_kid,
        root_kid,
    })
}

/// Signs `update_manifest` (exactly the string the twin will carry) with `signing`: the
/// `sjwk` token (the signing key's JWK under `signing.signing_kid`, signed by the root key
/// under `signing.root_kid`) and the signature over the manifest's SHA-256. The manifest must
/// parse ([`manifest::parse`]) and both keys be RSA keys a device accepts, so what this signs
/// a device can read.
pub fn sign(update_manifest: &str, signing: &SigningChain) -> Result<String, OsUpdateError> {
    manifest::parse(update_manifest.as_bytes())?;
    jwk::check_rsa(&signing.root, "root key")?;
    jwk::check_rsa(&signing.signing, "signing key")?;
    let jwk = JwkOut::new(&signing.signing, &signing.signing_kid, "signing key")?;
    let sjwk = compact(
        &encode(
            "the signing key token's header",
            &SjwkHeaderOut {
                alg: ALGORITHM,
                kid: &signing.root_kid,
            },
        )?,
        &encode("the signing key's JWK", &jwk)?,
        &signing.root,
    )?;
    let hash = SignedHash {
        sha256: STANDARD.encode(openssl::sha::sha256(update_manifest.as_bytes())),
    };
    let token = compact(
        &encode(
            "the signature's header",
            &OuterHeaderOut {
                alg: ALGORITHM,
                sjwk: &sjwk,
            },
        )?,
        &encode("the signed hash", &hash)?,
        &signing.signing,
    )?;
    if token.len() > MAX_SIGNATURE_BYTES {
        return Err(OsUpdateError::SignatureSize {
            found: token.len(),
            max: MAX_SIGNATURE_BYTES,
        });
    }
    Ok(token)
}

/// `BASE64URL(header).BASE64URL(payload).BASE64URL(RS256 signature over the first two)`,
/// the bytes as they are, unchecked: for tests and fuzzing, which make tokens [`sign`]
/// refuses to.
pub fn compact(
    header: &[u8],
    payload: &[u8],
    key: &PKey<Private>,
) -> Result<String, OsUpdateError> {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = (|| {
        let mut signer = Signer::new(MessageDigest::sha256(), key)?;
        signer.set_rsa_padding(Padding::PKCS1)?;
        signer.sign_oneshot_to_vec(token.as_bytes())
    })()
    .map_err(|source| OsUpdateError::Crypto {
        what: "signing with RS256",
        source,
    })?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, OsUpdateError> {
    serde_json::to_vec(value).map_err(|source| OsUpdateError::Encode { what, source })
}

/// Unpadded base64url, strictly (no padding, no whitespace, no stray bits).
fn decode(jws: Jws, segment: Segment, text: &str) -> Result<Vec<u8>, OsUpdateError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|source| OsUpdateError::Base64 {
            jws,
            segment,
            source,
        })
}

/// [`decode`], then the nesting bound.
fn decode_json(jws: Jws, segment: Segment, text: &str) -> Result<Vec<u8>, OsUpdateError> {
    let bytes = decode(jws, segment, text)?;
    if !nesting_within(&bytes, MAX_NESTING) {
        return Err(OsUpdateError::Nesting {
            jws,
            segment,
            max: MAX_NESTING,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use openssl::rsa::Rsa;

    use super::*;
    use crate::manifest::{for_bundle, UpdateId};

    struct Keys {
        root: PKey<Private>,
        signing: PKey<Private>,
        other: PKey<Private>,
    }

    /// RSA keys take a while to generate: once per test binary.
    fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let rsa = |bits| PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap();
            Keys {
                root: rsa(2048),
                signing: rsa(2048),
                other: rsa(2048),
            }
        })
    }

    fn public(key: &PKey<Private>) -> PKey<Public> {
        PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap()
    }

    fn chain() -> SigningChain {
        let keys = keys();
        SigningChain {
            root_kid: key_id(&public(&keys.root)).unwrap(),
            root: keys.root.clone(),
            signing_kid: "signing-1".into(),
            signing: keys.signing.clone(),
        }
    }

    fn roots() -> RootKeys {
        let chain = chain();
        RootKeys::from_jwks(
            RootKeys::to_jwks(&[(chain.root_kid.clone(), public(&chain.root))])
                .unwrap()
                .as_bytes(),
        )
        .unwrap()
    }

    fn manifest() -> String {
        for_bundle(
            UpdateId {
                provider: "testudo".into(),
                name: "gateway".into(),
                version: "1.3.0".into(),
            },
            BTreeMap::from([("model".to_owned(), "m".to_owned())]),
            "update.raucb",
            10,
            [7; 32],
            "1.3.0",
            "2026-12-04T00:00:00Z",
        )
        .to_json()
    }

    /// The (header, payload) of a compact JWS as JSON values.
    fn parts(token: &str) -> (serde_json::Value, serde_json::Value) {
        let mut segments = token.split('.');
        let mut next = || {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments.next().unwrap()).unwrap())
                .unwrap()
        };
        (next(), next())
    }

    #[test]
    fn a_signed_manifest_verifies_and_has_adu_s_shape() {
        let manifest = manifest();
        let signature = sign(&manifest, &chain()).unwrap();
        let verified = verify(&manifest, &signature, &roots()).unwrap();
        assert_eq!(
            verified.manifest,
            manifest::parse(manifest.as_bytes()).unwrap()
        );
        assert_eq!(verified.signing_kid, "signing-1");
        assert_eq!(verified.root_kid, chain().root_kid);

        let (header, payload) = parts(&signature);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header.as_object().unwrap().len(), 2);
        assert_eq!(
            payload,
            serde_json::json!({"sha256": STANDARD.encode(openssl::sha::sha256(manifest.as_bytes()))})
        );
        let (sjwk_header, jwk) = parts(header["sjwk"].as_str().unwrap());
        assert_eq!(
            sjwk_header,
            serde_json::json!({"alg": "RS256", "kid": chain().root_kid})
        );
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["kid"], "signing-1");
        assert_eq!(jwk["e"], "AQAB");
    }

    #[test]
    fn a_changed_manifest_or_foreign_chain_is_refused_at_its_step() {
        let manifest = manifest();
        let signature = sign(&manifest, &chain()).unwrap();
        let tampered = manifest.replace("1.3.0", "1.3.1");
        assert!(matches!(
            verify(&tampered, &signature, &roots()),
            Err(OsUpdateError::ManifestHash { .. })
        ));
        // Whitespace is a change too: the exact bytes are signed.
        assert!(matches!(
            verify(&format!("{manifest} "), &signature, &roots()),
            Err(OsUpdateError::ManifestHash { .. })
        ));

        // A root this device does not have.
        let foreign = SigningChain {
            root_kid: "someone-else".into(),
            ..chain()
        };
        match verify(&manifest, &sign(&manifest, &foreign).unwrap(), &roots()) {
            Err(OsUpdateError::UnknownRootKey { kid, trusted }) => {
                assert_eq!(kid, "someone-else");
                assert_eq!(trusted, vec![chain().root_kid]);
            }
            other => panic!("unexpected {other:?}"),
        }

        // The sjwk signed by another key claiming the root's id.
        let impostor = SigningChain {
            root: keys().other.clone(),
            ..chain()
        };
        assert!(matches!(
            verify(&manifest, &sign(&manifest, &impostor).unwrap(), &roots()),
            Err(OsUpdateError::Signature { jws: Jws::SigningKey, kid, .. }) if kid == chain().root_kid
        ));
    }

    #[test]
    fn a_signing_key_swapped_after_the_root_signed_is_refused() {
        let manifest = manifest();
        // A valid sjwk (vouching for `signing`), but the manifest signed with `other`.
        let good = sign(&manifest, &chain()).unwrap();
        let (header, _) = parts(&good);
        let outer_header = serde_json::to_vec(&header).unwrap();
        let hash = serde_json::json!({"sha256": STANDARD.encode(openssl::sha::sha256(manifest.as_bytes()))});
        let forged = compact(&outer_header, hash.to_string().as_bytes(), &keys().other).unwrap();
        assert!(matches!(
            verify(&manifest, &forged, &roots()),
            Err(OsUpdateError::Signature { jws: Jws::ManifestSignature, kid, .. }) if kid == "signing-1"
        ));
    }

    fn outer_with_header(header: serde_json::Value, manifest: &str) -> String {
        let hash = serde_json::json!({"sha256": STANDARD.encode(openssl::sha::sha256(manifest.as_bytes()))});
        compact(
            header.to_string().as_bytes(),
            hash.to_string().as_bytes(),
            &keys().signing,
        )
        .unwrap()
    }

    #[test]
    fn headers_are_checked_before_any_key_is_used() {
        let manifest = manifest();
        let good = sign(&manifest, &chain()).unwrap();
        let (header, _) = parts(&good);
        let sjwk = header["sjwk"].as_str().unwrap();

        for alg in ["none", "HS256", "RS512", "PS256", "rs256"] {
            assert!(matches!(
                verify(&manifest, &outer_with_header(serde_json::json!({"alg": alg, "sjwk": sjwk}), &manifest), &roots()),
                Err(OsUpdateError::Algorithm { jws: Jws::ManifestSignature, found }) if found == alg
            ));
        }
        assert!(matches!(
            verify(
                &manifest,
                &outer_with_header(
                    serde_json::json!({"alg": "RS256", "sjwk": sjwk, "crit": ["exp"]}),
                    &manifest
                ),
                &roots()
            ),
            Err(OsUpdateError::CriticalHeader {
                jws: Jws::ManifestSignature
            })
        ));
        assert!(matches!(
            verify(
                &manifest,
                &outer_with_header(serde_json::json!({"alg": "RS256"}), &manifest),
                &roots()
            ),
            Err(OsUpdateError::MissingSigningKey)
        ));
        assert!(matches!(
            verify(
                &manifest,
                &outer_with_header(serde_json::json!({"alg": "RS256", "sjwk": 5}), &manifest),
                &roots()
            ),
            Err(OsUpdateError::Header {
                jws: Jws::ManifestSignature,
                ..
            })
        ));
        // Unknown parameters are ignored.
        assert!(verify(
            &manifest,
            &outer_with_header(
                serde_json::json!({"alg": "RS256", "sjwk": sjwk, "typ": "JWT", "x5t": "x"}),
                &manifest
            ),
            &roots()
        )
        .is_ok());

        // The sjwk's own header: no kid, `none`.
        let sjwk_with = |header: serde_json::Value| {
            let (_, jwk) = parts(sjwk);
            compact(
                header.to_string().as_bytes(),
                jwk.to_string().as_bytes(),
                &keys().root,
            )
            .unwrap()
        };
        let no_kid = sjwk_with(serde_json::json!({"alg": "RS256"}));
        assert!(matches!(
            verify(
                &manifest,
                &outer_with_header(
                    serde_json::json!({"alg": "RS256", "sjwk": no_kid}),
                    &manifest
                ),
                &roots()
            ),
            Err(OsUpdateError::MissingKeyId)
        ));
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD
                .encode(serde_json::json!({"alg": "none", "kid": chain().root_kid}).to_string()),
            sjwk.split('.').nth(1).unwrap()
        );
        assert!(matches!(
            verify(&manifest, &outer_with_header(serde_json::json!({"alg": "RS256", "sjwk": unsigned}), &manifest), &roots()),
            Err(OsUpdateError::Algorithm { jws: Jws::SigningKey, found }) if found == "none"
        ));
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let manifest = manifest();
        let roots = roots();
        type Expected = fn(&OsUpdateError) -> bool;
        let cases: &[(&str, Expected)] = &[
            ("", |e| {
                matches!(e, OsUpdateError::Segments { found: 1, .. })
            }),
            ("a.b", |e| {
                matches!(e, OsUpdateError::Segments { found: 2, .. })
            }),
            ("a.b.c.d", |e| {
                matches!(e, OsUpdateError::Segments { found: 4, .. })
            }),
            ("!!.b.c", |e| {
                matches!(
                    e,
                    OsUpdateError::Base64 {
                        segment: Segment::Header,
                        ..
                    }
                )
            }),
            ("e30=.b.c", |e| matches!(e, OsUpdateError::Base64 { .. })),
            ("e30.b.c", |e| matches!(e, OsUpdateError::Header { .. })),
            ("W1tbW1tdXV1dXQ.b.c", |e| {
                matches!(e, OsUpdateError::Nesting { .. })
            }),
        ];
        for (token, expected) in cases {
            let error = verify(&manifest, token, &roots).unwrap_err();
            assert!(expected(&error), "{token}: {error:?}");
        }
        let huge = "a".repeat(MAX_SIGNATURE_BYTES + 1);
        assert!(matches!(
            verify(&manifest, &huge, &roots),
            Err(OsUpdateError::SignatureSize { .. })
        ));
        // A signature of the wrong length.
        let good = sign(&manifest, &chain()).unwrap();
        let short = format!("{}AAAA", good.rsplit_once('.').unwrap().0.to_owned() + ".");
        assert!(matches!(
            verify(&manifest, &short, &roots),
            Err(OsUpdateError::SignatureLength {
                jws: Jws::ManifestSignature,
                found: 3,
                expected: 256,
                ..
            })
        ));
    }

    #[test]
    fn the_signed_payload_must_be_a_32_byte_hash() {
        let manifest = manifest();
        let sjwk = parts(&sign(&manifest, &chain()).unwrap()).0["sjwk"].clone();
        let header = serde_json::json!({"alg": "RS256", "sjwk": sjwk}).to_string();
        for payload in [
            serde_json::json!({"sha256": "AAAA"}),
            serde_json::json!({"sha256": 5}),
            serde_json::json!({"sha": "x"}),
        ] {
            let token = compact(
                header.as_bytes(),
                payload.to_string().as_bytes(),
                &keys().signing,
            )
            .unwrap();
            assert!(matches!(
                verify(&manifest, &token, &roots()),
                Err(OsUpdateError::SignedHash { .. })
            ));
        }
    }

    #[test]
    fn what_sign_refuses() {
        assert!(matches!(
            sign("{}", &chain()),
            Err(OsUpdateError::ManifestJson { .. })
        ));
        let weak = SigningChain {
            signing: PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap(),
            ..chain()
        };
        assert!(matches!(
            sign(&manifest(), &weak),
            Err(OsUpdateError::KeyStrength {
                what: "signing key",
                ..
            })
        ));
        let debug = format!("{:?}", chain());
        assert!(
            debug.contains("signing-1") && !debug.contains("PKey"),
            "{debug}"
        );
    }

    #[test]
    fn the_root_key_set_reads_what_it_writes_and_refuses_the_rest() {
        let root = public(&keys().root);
        let kid = key_id(&root).unwrap();
        let jwks = RootKeys::to_jwks(&[(kid.clone(), root.clone())]).unwrap();
        let value: serde_json::Value = serde_json::from_str(&jwks).unwrap();
        assert_eq!(value["keys"][0]["kid"], kid.as_str());
        assert_eq!(value["keys"][0]["kty"], "RSA");
        assert_eq!(value["keys"][0]["alg"], "RS256");
        assert_eq!(
            RootKeys::from_jwks(jwks.as_bytes()).unwrap().kids(),
            vec![kid.as_str()]
        );

        // Without a kid, a key is known by its thumbprint.
        let mut bare = value.clone();
        bare["keys"][0].as_object_mut().unwrap().remove("kid");
        assert_eq!(
            RootKeys::from_jwks(bare.to_string().as_bytes())
                .unwrap()
                .kids(),
            vec![kid.as_str()]
        );
        let twice = RootKeys::to_jwks(&[(kid.clone(), root.clone()), (kid.clone(), root)]).unwrap();
        assert!(matches!(
            RootKeys::from_jwks(twice.as_bytes()),
            Err(OsUpdateError::DuplicateRootKey { kid: named }) if named == kid
        ));
        assert!(matches!(
            RootKeys::from_jwks(br#"{"keys":[]}"#),
            Err(OsUpdateError::RootKeyCount { found: 0 })
        ));
        assert!(matches!(
            RootKeys::from_jwks(br#"{"keys":{}}"#),
            Err(OsUpdateError::Jwks { .. })
        ));
        assert!(matches!(
            RootKeys::from_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
            Err(OsUpdateError::Jwk {
                role: KeyRole::Root,
                ..
            })
        ));
        assert!(matches!(
            RootKeys::from_jwks(&vec![b' '; MAX_JWKS_BYTES + 1]),
            Err(OsUpdateError::JwksSize { .. })
        ));
        let weak = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        assert!(matches!(
            RootKeys::to_jwks(&[("weak".into(), public(&weak))]),
            Err(OsUpdateError::KeyStrength { .. })
        ));
    }
}
