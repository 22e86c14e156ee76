//! Target `manifest_signatures`: manifests and signatures through
//! [`testudo_os_update::signature::verify`] with the fuzz root key set. Nothing may panic;
//! what verifies was signed by the fuzz chain, signs again, and verifies to the same
//! manifest.
//!
//! Random bytes never carry a valid signature, so the input says which part it is:
//! - `M` then bytes: the manifest, correctly signed by the fuzz chain, so the manifest
//!   parser is reached after the checks;
//! - `K` then bytes: the signing key's JWK, signed by the fuzz root key (the manifest
//!   signature made with the fuzz signing key);
//! - `S` then bytes: the `sjwk` token's header, over the fuzz signing key's JWK, signed by
//!   the fuzz root key;
//! - `H` then bytes: the signature's header, over a valid payload, signed by the fuzz
//!   signing key;
//! - anything else: the manifest, a newline, the signature.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use testudo_os_update::keys::public_half;
use testudo_os_update::signature::{compact, sign, verify};

use crate::keys::{chain, roots, VALID_MANIFEST};

/// The target's body.
pub fn fuzz(data: &[u8]) {
    let (manifest, signature) = match data.split_first() {
        Some((b'M', manifest)) => match std::str::from_utf8(manifest) {
            Ok(manifest) => (manifest.to_owned(), chained(manifest, None, None, None)),
            Err(_) => return,
        },
        Some((b'K', jwk)) => (
            VALID_MANIFEST.to_owned(),
            chained(VALID_MANIFEST, Some(jwk), None, None),
        ),
        Some((b'S', header)) => (
            VALID_MANIFEST.to_owned(),
            chained(VALID_MANIFEST, None, Some(header), None),
        ),
        Some((b'H', header)) => (
            VALID_MANIFEST.to_owned(),
            chained(VALID_MANIFEST, None, None, Some(header)),
        ),
        _ => {
            let Ok(text) = std::str::from_utf8(data) else {
                return;
            };
            let (manifest, signature) = text.split_once('\n').unwrap_or((text, ""));
            (manifest.to_owned(), signature.to_owned())
        }
    };
    let Ok(verified) = verify(&manifest, &signature, roots()) else {
        return;
    };
    assert_eq!(verified.root_kid, chain().root_kid);
    let again = sign(&manifest, chain()).expect("a verified manifest signs again");
    let back = verify(&manifest, &again, roots()).expect("what sign makes verifies");
    assert_eq!(back.manifest, verified.manifest);
}

/// A signature of `manifest` by the fuzz chain, with the signing key's JWK, the `sjwk`
/// header or the outer header replaced by the bytes given.
fn chained(
    manifest: &str,
    jwk: Option<&[u8]>,
    sjwk_header: Option<&[u8]>,
    outer_header: Option<&[u8]>,
) -> String {
    let chain = chain();
    let (n, e) = rsa_components(chain);
    let own_jwk = serde_json::json!({
        "kty": "RSA", "n": n, "e": e, "alg": "RS256", "kid": chain.signing_kid,
    })
    .to_string();
    let own_sjwk_header = serde_json::json!({"alg": "RS256", "kid": chain.root_kid}).to_string();
    let sjwk = compact(
        sjwk_header.unwrap_or(own_sjwk_header.as_bytes()),
        jwk.unwrap_or(own_jwk.as_bytes()),
        &chain.root,
    )
    .expect("signing with the fuzz root key");
    let own_outer_header = serde_json::json!({"alg": "RS256", "sjwk": sjwk}).to_string();
    let payload = serde_json::json!({
        "sha256": STANDARD.encode(openssl::sha::sha256(manifest.as_bytes())),
    })
    .to_string();
    compact(
        outer_header.unwrap_or(own_outer_header.as_bytes()),
        payload.as_bytes(),
        &chain.signing,
    )
    .expect("signing with the fuzz signing key")
}

/// The fuzz signing key's `n` and `e`, unpadded base64url.
fn rsa_components(chain: &testudo_os_update::SigningChain) -> (String, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rsa = public_half(&chain.signing)
        .and_then(|key| {
            key.rsa()
                .map_err(|source| testudo_os_update::OsUpdateError::Crypto {
                    what: "the fuzz signing key",
                    source,
                })
        })
        .expect("the fuzz signing key is RSA");
    (
        URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
        URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
    )
}
