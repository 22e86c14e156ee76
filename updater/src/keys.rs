//! Development keys and a small certificate authority for tests and first images.
//!
//! `init_dev_keys(DIR)` writes fixed names, all PEM:
//! * `ca.pem` — self-signed ECDSA P-256 CA certificate: the device keyring. Its private key
//!   is NOT kept (a new set means a new keyring).
//! * `signing.pem` + `signing.key` — ECDSA P-256 bundle signer issued by that CA (no EKU, so
//!   RAUC's default S/MIME purpose check accepts it); key as PKCS#8 PEM, mode 0600.
//! * `deploy.ed25519` — Ed25519 private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`), mode 0600;
//!   `deploy.ed25519.pub` — its public key, SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
//!   For testudo's own metadata signatures (RAUC 1.8 cannot verify Ed25519 CMS).
//!
//! Every subject's CN contains "testudo development" so they are never mistaken for
//! production keys.

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509};

use crate::error::{write_err, Result, UpdaterError};

/// Marker placed in every development certificate's common name.
pub const DEV_MARKER: &str = "testudo development";

/// Key algorithm for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 (default for bundle signing).
    EcP256,
    /// RSA 2048 (accepted by RAUC too).
    Rsa2048,
}

/// A certificate with its private key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// Validity window in seconds relative to now: `(not_before, not_after)` offsets.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Offset of notBefore from now (seconds, may be negative).
    pub not_before: i64,
    /// Offset of notAfter from now (seconds, may be negative: an expired certificate).
    pub not_after: i64,
}

impl Validity {
    /// From one hour ago to `days` days from now.
    pub fn days(days: i64) -> Self {
        Validity {
            not_before: -3600,
            not_after: days * 86_400,
        }
    }
}

fn gen_err(what: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> UpdaterError {
    move |source| UpdaterError::GenerateKey { what, source }
}

fn new_key(kind: KeyKind) -> Result<PKey<Private>> {
    match kind {
        KeyKind::EcP256 => {
            let group =
                EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(gen_err("EC key"))?;
            let key = EcKey::generate(&group).map_err(gen_err("EC key"))?;
            PKey::from_ec_key(key).map_err(gen_err("EC key"))
        }
        KeyKind::Rsa2048 => {
            let key = Rsa::generate(2048).map_err(gen_err("RSA key"))?;
            PKey::from_rsa(key).map_err(gen_err("RSA key"))
        }
    }
}

fn now_plus(seconds: i64) -> Result<Asn1Time> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Asn1Time::from_unix(now + seconds).map_err(gen_err("certificate validity"))
}

/// Issues a certificate for `common_name`; self-signed when `issuer` is None. `is_ca` makes
/// it a CA (basicConstraints CA:TRUE, keyCertSign).
pub fn issue(
    common_name: &str,
    kind: KeyKind,
    validity: Validity,
    is_ca: bool,
    issuer: Option<&Issued>,
) -> Result<Issued> {
    let key = new_key(kind)?;
    let not_before = now_plus(validity.not_before)?;
    let not_after = now_plus(validity.not_after)?;
    let cert = build_cert(common_name, &key, [&not_before, &not_after], is_ca, issuer)
        .map_err(gen_err("certificate"))?;
    Ok(Issued { cert, key })
}

/// The X.509 v3 certificate of [`issue`], valid from `validity[0]` to `validity[1]`.
fn build_cert(
    common_name: &str,
    key: &PKey<Private>,
    validity: [&Asn1Time; 2],
    is_ca: bool,
    issuer: Option<&Issued>,
) -> Result<X509, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    let name = name.build();
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
    builder.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(issuer.map_or(name.as_ref(), |i| i.cert.subject_name()))?;
    builder.set_pubkey(key)?;
    builder.set_not_before(validity[0])?;
    builder.set_not_after(validity[1])?;
    if is_ca {
        builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
    } else {
        builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    }
    let ski = SubjectKeyIdentifier::new()
        .build(&builder.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))?;
    builder.append_extension(ski)?;
    if let Some(issuer) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&builder.x509v3_context(Some(&issuer.cert), None))?;
        builder.append_extension(aki)?;
    }
    builder.sign(issuer.map_or(key, |i| &i.key), MessageDigest::sha256())?;
    Ok(builder.build())
}

/// Writes `cert` as PEM to `path`.
pub fn write_cert(path: &Path, cert: &X509) -> Result<()> {
    let pem = cert.to_pem().map_err(gen_err("certificate PEM"))?;
    std::fs::write(path, pem).map_err(write_err(path))
}

/// Writes `key` as PKCS#8 PEM to `path` with mode 0600.
pub fn write_private_key(path: &Path, key: &PKey<Private>) -> Result<()> {
    let pem = key
        .private_key_to_pem_pkcs8()
        .map_err(gen_err("private key PEM"))?;
    write_secret(path, &pem)
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err(path))?;
    file.write_all(bytes).map_err(write_err(path))
}

/// Paths of the files [`init_dev_keys`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevKeys {
    /// `DIR/ca.pem`: the keyring.
    pub ca_cert: PathBuf,
    /// `DIR/signing.pem`.
    pub signing_cert: PathBuf,
    /// `DIR/signing.key`.
    pub signing_key: PathBuf,
    /// `DIR/deploy.ed25519` (PKCS#8 PEM).
    pub deploy_key: PathBuf,
    /// `DIR/deploy.ed25519.pub` (SPKI PEM).
    pub deploy_pub: PathBuf,
}

impl DevKeys {
    /// The fixed file names under `dir`.
    pub fn paths(dir: &Path) -> Self {
        DevKeys {
            ca_cert: dir.join("ca.pem"),
            signing_cert: dir.join("signing.pem"),
            signing_key: dir.join("signing.key"),
            deploy_key: dir.join("deploy.ed25519"),
            deploy_pub: dir.join("deploy.ed25519.pub"),
        }
    }

    /// A bundle [`Signer`](crate::signature::Signer) for these keys.
    pub fn signer(&self) -> crate::signature::Signer {
        crate::signature::Signer {
            cert: self.signing_cert.clone(),
            key: self.signing_key.clone(),
            intermediates: Vec::new(),
        }
    }
}

/// Creates development keys in `dir` (created if missing). Refuses to overwrite existing
/// key files, so a keyring in use is never replaced by accident.
pub fn init_dev_keys(dir: &Path) -> Result<DevKeys> {
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let paths = DevKeys::paths(dir);
    for path in [
        &paths.ca_cert,
        &paths.signing_cert,
        &paths.signing_key,
        &paths.deploy_key,
        &paths.deploy_pub,
    ] {
        if path.exists() {
            return Err(UpdaterError::Write {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "refusing to overwrite a key file",
                ),
            });
        }
    }
    let ca = issue(
        &format!("{DEV_MARKER} CA (not for production)"),
        KeyKind::EcP256,
        Validity::days(3650),
        true,
        None,
    )?;
    let signing = issue(
        &format!("{DEV_MARKER} bundle signer (not for production)"),
        KeyKind::EcP256,
        Validity::days(3650),
        false,
        Some(&ca),
    )?;
    write_cert(&paths.ca_cert, &ca.cert)?;
    write_cert(&paths.signing_cert, &signing.cert)?;
    write_private_key(&paths.signing_key, &signing.key)?;
    let deploy = PKey::generate_ed25519().map_err(gen_err("Ed25519 key"))?;
    write_private_key(&paths.deploy_key, &deploy)?;
    let public = deploy
        .public_key_to_pem()
        .map_err(gen_err("Ed25519 public key PEM"))?;
    std::fs::write(&paths.deploy_pub, public).map_err(write_err(&paths.deploy_pub))?;
    Ok(paths)
}
