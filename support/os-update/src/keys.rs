//! OS update keys: their key id (the RFC 7638 thumbprint), and the files of a keys directory
//! (the `--keys DIR` of the CLI and the image builder, beside `ca.pem`, `signing.pem`/`.key`
//! and `deploy.ed25519`/`.pub`):
//!
//! - [`ROOT_KEY`] — the root key, RSA 3072, PKCS#8 PEM, mode 0600: signs signing keys.
//! - [`SIGNING_KEY`] — the signing key, RSA 2048, PKCS#8 PEM, mode 0600: signs manifests.
//! - [`ROOT_JWKS`] — the root key's public half as a JWK set: what the image carries and
//!   the device verifies signatures against.
//!
//! Development keys: [`init_dev_update_keys`] makes all three, never over existing files.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;

use crate::error::OsUpdateError;
use crate::jwk;
use crate::signature::{RootKeys, SigningChain, MAX_JWKS_BYTES};

/// The root key's file in a keys directory.
pub const ROOT_KEY: &str = "update-root.rsa";

/// The signing key's file in a keys directory.
pub const SIGNING_KEY: &str = "update-signing.rsa";

/// The root key set's file in a keys directory (public; what an image carries).
pub const ROOT_JWKS: &str = "update-roots.jwks";

/// Bits of the root key [`init_dev_update_keys`] makes.
pub const ROOT_KEY_BITS: u32 = 3072;

/// Bits of the signing key [`init_dev_update_keys`] makes.
pub const SIGNING_KEY_BITS: u32 = 2048;

/// Most bytes of a private key file read.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The key id of `key`: the RFC 7638 JWK thumbprint (SHA-256) of its RSA JWK, base64url
/// without padding. That is the SHA-256 of exactly `{"e":"<e>","kty":"RSA","n":"<n>"}`: the
/// required members in lexicographic order, no whitespace. Any JOSE library computes the same.
pub fn key_id(key: &PKey<Public>) -> Result<String, OsUpdateError> {
    let (n, e) = jwk::components(key, "key")?;
    // `n` and `e` are base64url: nothing in them needs escaping.
    let members = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    Ok(URL_SAFE_NO_PAD.encode(openssl::sha::sha256(members.as_bytes())))
}

/// The paths of the OS update key files in a keys directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateKeyFiles {
    /// `DIR/update-root.rsa`.
    pub root_key: PathBuf,
    /// `DIR/update-signing.rsa`.
    pub signing_key: PathBuf,
    /// `DIR/update-roots.jwks`.
    pub root_jwks: PathBuf,
}

impl UpdateKeyFiles {
    /// The fixed file names under `dir`.
    pub fn in_dir(dir: &Path) -> UpdateKeyFiles {
        UpdateKeyFiles {
            root_key: dir.join(ROOT_KEY),
            signing_key: dir.join(SIGNING_KEY),
            root_jwks: dir.join(ROOT_JWKS),
        }
    }

    /// The three paths, private keys first.
    pub fn paths(&self) -> [&PathBuf; 3] {
        [&self.root_key, &self.signing_key, &self.root_jwks]
    }
}

/// Makes development OS update keys in `dir` (created if missing): a root key, a signing key
/// and the root key set. Refuses if any of the three files exists, so keys in use are never
/// replaced by accident; files are created exclusively.
pub fn init_dev_update_keys(dir: &Path) -> Result<UpdateKeyFiles, OsUpdateError> {
    std::fs::create_dir_all(dir).map_err(|source| OsUpdateError::WriteKey {
        path: dir.to_owned(),
        source,
    })?;
    let files = UpdateKeyFiles::in_dir(dir);
    if let Some(existing) = files.paths().into_iter().find(|path| path.exists()) {
        return Err(OsUpdateError::KeyExists {
            path: existing.clone(),
        });
    }
    let root = generate(ROOT_KEY_BITS, "generating the OS update root key")?;
    let signing = generate(SIGNING_KEY_BITS, "generating the OS update signing key")?;
    let root_public = public_half(&root)?;
    let jwks = RootKeys::to_jwks(&[(key_id(&root_public)?, root_public)])?;
    write_private_key(&files.root_key, &root)?;
    write_private_key(&files.signing_key, &signing)?;
    write_new(&files.root_jwks, jwks.as_bytes(), 0o644)?;
    Ok(files)
}

/// The signing chain of the keys in `dir`: [`ROOT_KEY`] and [`SIGNING_KEY`], each under its
/// key id ([`key_id`]), the root's as [`init_dev_update_keys`] writes it into [`ROOT_JWKS`].
pub fn load_signing_chain(dir: &Path) -> Result<SigningChain, OsUpdateError> {
    let files = UpdateKeyFiles::in_dir(dir);
    let root = read_private_key(&files.root_key, "OS update root key")?;
    let signing = read_private_key(&files.signing_key, "OS update signing key")?;
    Ok(SigningChain {
        root_kid: key_id(&public_half(&root)?)?,
        root,
        signing_kid: key_id(&public_half(&signing)?)?,
        signing,
    })
}

/// The root key set [`ROOT_JWKS`] in `dir`.
pub fn read_root_jwks(dir: &Path) -> Result<RootKeys, OsUpdateError> {
    let path = dir.join(ROOT_JWKS);
    let bytes = read_bounded(&path, MAX_JWKS_BYTES as u64)?;
    RootKeys::from_jwks(&bytes).map_err(|source| OsUpdateError::KeyFile {
        path,
        source: Box::new(source),
    })
}

/// The public half of `key`.
pub fn public_half(key: &PKey<Private>) -> Result<PKey<Public>, OsUpdateError> {
    let crypto = |source| OsUpdateError::Crypto {
        what: "taking a key's public half",
        source,
    };
    let der = key.public_key_to_der().map_err(crypto)?;
    PKey::public_key_from_der(&der).map_err(crypto)
}

fn generate(bits: u32, what: &'static str) -> Result<PKey<Private>, OsUpdateError> {
    Rsa::generate(bits)
        .and_then(PKey::from_rsa)
        .map_err(|source| OsUpdateError::Crypto { what, source })
}

/// Reads an RSA private key from PKCS#8 PEM (`BEGIN PRIVATE KEY`), refusing one a device
/// would not accept signatures of.
fn read_private_key(path: &Path, what: &'static str) -> Result<PKey<Private>, OsUpdateError> {
    let pem = read_bounded(path, MAX_KEY_FILE_BYTES)?;
    let in_file = |source| OsUpdateError::KeyFile {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let key = PKey::private_key_from_pem(&pem).map_err(|source| {
        in_file(OsUpdateError::Crypto {
            what: "reading a PKCS#8 PEM private key",
            source,
        })
    })?;
    jwk::check_rsa(&key, what).map_err(in_file)?;
    Ok(key)
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, OsUpdateError> {
    let read_error = |source| OsUpdateError::ReadKey {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > max {
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {max} bytes"),
        )));
    }
    Ok(bytes)
}

fn write_private_key(path: &Path, key: &PKey<Private>) -> Result<(), OsUpdateError> {
    let pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|source| OsUpdateError::Crypto {
            what: "encoding a private key as PKCS#8 PEM",
            source,
        })?;
    write_new(path, &pem, 0o600)
}

/// Creates `path` (never replacing a file) with `mode` and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), OsUpdateError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            OsUpdateError::KeyExists {
                path: path.to_owned(),
            }
        } else {
            OsUpdateError::WriteKey {
                path: path.to_owned(),
                source,
            }
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// RFC 7638 section 3.1: the example RSA key and its thumbprint.
    #[test]
    fn the_key_id_is_the_rfc_7638_thumbprint() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let rsa = Rsa::from_public_components(
            openssl::bn::BigNum::from_slice(&URL_SAFE_NO_PAD.decode(n).unwrap()).unwrap(),
            openssl::bn::BigNum::from_u32(65_537).unwrap(),
        )
        .unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        assert_eq!(
            key_id(&key).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let ed = public_half(&PKey::generate_ed25519().unwrap()).unwrap();
        assert!(matches!(key_id(&ed), Err(OsUpdateError::KeyType { .. })));
    }

    #[test]
    fn dev_keys_are_made_once_and_load_as_a_chain_the_root_set_trusts() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let files = init_dev_update_keys(&keys).unwrap();
        assert_eq!(files, UpdateKeyFiles::in_dir(&keys));
        for (path, mode) in [
            (&files.root_key, 0o600),
            (&files.signing_key, 0o600),
            (&files.root_jwks, 0o644),
        ] {
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "{}",
                path.display()
            );
        }
        let pem = std::fs::read_to_string(&files.root_key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");

        let chain = load_signing_chain(&keys).unwrap();
        assert_eq!(chain.root.bits(), ROOT_KEY_BITS);
        assert_eq!(chain.signing.bits(), SIGNING_KEY_BITS);
        let roots = read_root_jwks(&keys).unwrap();
        assert_eq!(roots.kids(), vec![chain.root_kid.as_str()]);

        // Never overwritten: the second call fails and the files are unchanged.
        let before = std::fs::read(&files.signing_key).unwrap();
        assert!(matches!(
            init_dev_update_keys(&keys),
            Err(OsUpdateError::KeyExists { path }) if path == files.root_key
        ));
        std::fs::remove_file(&files.root_key).unwrap();
        assert!(matches!(
            init_dev_update_keys(&keys),
            Err(OsUpdateError::KeyExists { path }) if path == files.signing_key
        ));
        assert_eq!(std::fs::read(&files.signing_key).unwrap(), before);
    }

    #[test]
    fn key_files_are_named_when_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_signing_chain(dir.path()),
            Err(OsUpdateError::ReadKey { path, .. }) if path == dir.path().join(ROOT_KEY)
        ));
        let ed = PKey::generate_ed25519().unwrap();
        std::fs::write(
            dir.path().join(ROOT_KEY),
            ed.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        match load_signing_chain(dir.path()) {
            Err(OsUpdateError::KeyFile { path, source }) => {
                assert_eq!(path, dir.path().join(ROOT_KEY));
                assert!(
                    matches!(*source, OsUpdateError::KeyType { .. }),
                    "{source:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        std::fs::write(dir.path().join(ROOT_JWKS), "{}").unwrap();
        assert!(matches!(
            read_root_jwks(dir.path()),
            Err(OsUpdateError::KeyFile { source, .. }) if matches!(*source, OsUpdateError::Jwks { .. })
        ));
    }
}
