//! The keys a build signs with, as laid out by `testudo keys init` (testudo-updater's
//! `keys::init_dev_keys`): `ca.pem` (bundle keyring), `signing.pem` + `signing.key` (bundle
//! signer, ECDSA P-256), `deploy.ed25519` + `deploy.ed25519.pub` (Ed25519, signs the image
//! manifest and deployments), and the OS update keys of `testudo-os-update` (`update-root.rsa`,
//! `update-signing.rsa`, and `update-roots.jwks`, the root's public JWK set the image carries).
//!
//! Without `--keys`, development keys are created once in [`default_dev_keys_dir`] and
//! reused by every later build on this machine. They are marked "not for production".

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use testudo_updater::keys::DevKeys;

use crate::error::{ImageError, Result};

/// Where development keys live when no `--keys` directory is given:
/// `$XDG_DATA_HOME/testudo/dev-keys`, else `$HOME/.local/share/testudo/dev-keys`.
pub fn default_dev_keys_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("testudo/dev-keys");
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/testudo/dev-keys")
}

/// The JWK set of the root keys OS update manifests are signed under, in `dir`
/// (`testudo_os_update::keys::ROOT_JWKS`): the image carries it.
pub fn update_root_keys(dir: &Path) -> PathBuf {
    dir.join(testudo_os_update::keys::ROOT_JWKS)
}

/// [`update_root_keys`] of the directory `keys` are in.
pub fn update_root_keys_of(keys: &DevKeys) -> PathBuf {
    update_root_keys(keys.ca_cert.parent().unwrap_or(Path::new(".")))
}

/// The key files of `dir`, checked to exist.
pub fn open_keys(dir: &Path) -> Result<DevKeys> {
    let keys = DevKeys::paths(dir);
    let roots = update_root_keys(dir);
    for path in [
        &keys.ca_cert,
        &keys.signing_cert,
        &keys.signing_key,
        &keys.deploy_key,
        &keys.deploy_pub,
        &roots,
    ] {
        if !path.is_file() {
            return Err(ImageError::Key {
                path: path.clone(),
                source: "missing (create a key directory with `testudo keys init DIR`)".into(),
            });
        }
    }
    Ok(keys)
}

/// The development keys in `dir`, created on first use (and the OS update keys added to a
/// directory made before they existed).
pub fn ensure_dev_keys(dir: &Path) -> Result<DevKeys> {
    let keys = DevKeys::paths(dir);
    if !keys.deploy_key.is_file() {
        testudo_updater::keys::init_dev_keys(dir).map_err(|source| ImageError::Key {
            path: dir.to_path_buf(),
            source: Box::new(source),
        })?;
    }
    if !update_root_keys(dir).is_file() {
        testudo_os_update::keys::init_dev_update_keys(dir).map_err(|source| ImageError::Key {
            path: dir.to_path_buf(),
            source: Box::new(source),
        })?;
    }
    open_keys(dir)
}

/// Loads the Ed25519 manifest signing key (PKCS#8 PEM).
pub fn load_deploy_key(keys: &DevKeys) -> Result<SigningKey> {
    let pem = std::fs::read_to_string(&keys.deploy_key).map_err(|source| ImageError::Key {
        path: keys.deploy_key.clone(),
        source: Box::new(source),
    })?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|source| ImageError::Key {
        path: keys.deploy_key.clone(),
        source: source.to_string().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_keys_are_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let first = ensure_dev_keys(&keys_dir).unwrap();
        let deploy = std::fs::read(&first.deploy_key).unwrap();
        let second = ensure_dev_keys(&keys_dir).unwrap();
        assert_eq!(std::fs::read(&second.deploy_key).unwrap(), deploy);
        let key = load_deploy_key(&second).unwrap();
        assert_eq!(key.verifying_key().as_bytes().len(), 32);
    }

    #[test]
    fn incomplete_key_directory_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_keys(dir.path()).err();
        match err {
            Some(ImageError::Key { path, .. }) => assert!(path.ends_with("ca.pem")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
