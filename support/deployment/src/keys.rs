//! Deploy keys: their key id (the RFC 7638 JWK thumbprint a token's `kid` names), their JWK
//! form, and reading them from the PEM files `testudo keys init` writes (`deploy.ed25519`,
//! PKCS#8; `deploy.ed25519.pub`, SubjectPublicKeyInfo; the image carries the public one at
//! `testudo_plan::layout::rootfs::DEPLOY_PUBLIC_KEY`).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::DeploymentError;

/// The key id of `key`: the RFC 7638 JWK thumbprint (SHA-256) of its RFC 8037 OKP JWK,
/// base64url without padding. That is the SHA-256 of exactly
/// `{"crv":"Ed25519","kty":"OKP","x":"<base64url of the 32 key bytes>"}`: the required
/// members in lexicographic order, no whitespace. Any JOSE library computes the same value.
pub fn key_id(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    // `x` is base64url: nothing in it needs escaping.
    let members = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(members.as_bytes()))
}

/// `key` as a public JWK (RFC 8037): `{"crv":"Ed25519","kid":<key_id>,"kty":"OKP","x":...}`.
pub fn public_jwk(key: &VerifyingKey) -> serde_json::Value {
    serde_json::json!({
        "crv": "Ed25519",
        "kid": key_id(key),
        "kty": "OKP",
        "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
    })
}

/// Reads an Ed25519 public key from SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), the form
/// of `deploy.ed25519.pub`. Small-order (weak) keys are refused.
pub fn public_key_from_pem(pem: &str) -> Result<VerifyingKey, DeploymentError> {
    let key = VerifyingKey::from_public_key_pem(pem)
        .map_err(|source| DeploymentError::PublicKeyPem { source })?;
    if key.is_weak() {
        return Err(DeploymentError::WeakPublicKey { kid: key_id(&key) });
    }
    Ok(key)
}

/// Reads an Ed25519 private key from PKCS#8 PEM (`BEGIN PRIVATE KEY`), the form of
/// `deploy.ed25519`.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, DeploymentError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|source| DeploymentError::PrivateKeyPem { source })
}

/// [`public_key_from_pem`] of the file at `path` (e.g. the image's `DEPLOY_PUBLIC_KEY`).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, DeploymentError> {
    read_key(path, public_key_from_pem)
}

/// [`signing_key_from_pem`] of the file at `path` (a key directory's `deploy.ed25519`).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, DeploymentError> {
    read_key(path, signing_key_from_pem)
}

fn read_key<K>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<K, DeploymentError>,
) -> Result<K, DeploymentError> {
    let pem = std::fs::read_to_string(path).map_err(|source| DeploymentError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    parse(&pem).map_err(|source| DeploymentError::KeyFile {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 appendix A.1/A.3: the example Ed25519 key and its RFC 7638 thumbprint.
    #[test]
    fn the_key_id_is_the_rfc_7638_thumbprint_of_rfc_8037_example_key() {
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(key_id(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(
            public_jwk(&key)["x"],
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
    }

    /// RFC 8410 section 10: the example public key and private key (the same key pair).
    const RFC8410_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
        MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
        -----END PUBLIC KEY-----\n";
    const RFC8410_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";

    #[test]
    fn pem_keys_as_openssl_writes_them_are_read() {
        let public = public_key_from_pem(RFC8410_PUBLIC).unwrap();
        let private = signing_key_from_pem(RFC8410_PRIVATE).unwrap();
        assert_eq!(private.verifying_key(), public);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.ed25519.pub");
        std::fs::write(&path, RFC8410_PUBLIC).unwrap();
        assert_eq!(read_public_key(&path).unwrap(), public);
    }

    #[test]
    fn a_private_key_is_not_a_public_key_and_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.ed25519.pub");
        std::fs::write(&path, RFC8410_PRIVATE).unwrap();
        match read_public_key(&path) {
            Err(DeploymentError::KeyFile {
                path: named,
                source,
            }) => {
                assert_eq!(named, path);
                assert!(matches!(*source, DeploymentError::PublicKeyPem { .. }));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            read_signing_key(&dir.path().join("absent")),
            Err(DeploymentError::ReadKey { .. })
        ));
    }

    #[test]
    fn a_small_order_public_key_is_refused() {
        // The identity point (y = 1): of order 1, every signature "verifies" non-strictly.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let key = VerifyingKey::from_bytes(&weak).unwrap();
        let pem = ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(
            &key,
            ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF,
        )
        .unwrap();
        assert!(matches!(
            public_key_from_pem(&pem),
            Err(DeploymentError::WeakPublicKey { .. })
        ));
    }
}
