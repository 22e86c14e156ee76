//! CMS SignedData (DER) as RAUC 1.8 writes and checks it: `openssl cms -sign -binary
//! -nosmimecap [-nodetach]` with the intermediates embedded, verified against a keyring with
//! chain, validity and purpose checks. Large detached contents are streamed through a pipe
//! into OpenSSL, so memory stays bounded whatever the payload size.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use foreign_types::ForeignType;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509PurposeId, X509StoreContext, X509};
use sha2::Digest;

use crate::error::{read_err, Result, UpdaterError};

/// Files of a bundle signer: certificate, private key (PEM) and intermediate certificates to
/// embed so the device can build the chain up to its keyring.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Signer certificate (PEM).
    pub cert: PathBuf,
    /// Signer private key (PEM, PKCS#8 or traditional; ECDSA P-256 or RSA).
    pub key: PathBuf,
    /// Intermediate CA certificates (PEM files; each may hold several certificates).
    pub intermediates: Vec<PathBuf>,
}

/// A [`Signer`] with its files loaded.
pub struct LoadedSigner {
    cert: X509,
    key: PKey<Private>,
    chain: Stack<X509>,
}

impl std::fmt::Debug for LoadedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedSigner")
            .field("subject", &subject_of(&self.cert))
            .finish_non_exhaustive()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(read_err(path))
}

fn load_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(openssl::error::ErrorStack) -> UpdaterError {
    let path = path.to_path_buf();
    move |source| UpdaterError::LoadCrypto { what, path, source }
}

impl Signer {
    /// Loads the certificate, key and intermediates.
    pub fn load(&self) -> Result<LoadedSigner> {
        let cert = X509::from_pem(&read_file(&self.cert)?)
            .map_err(load_err("signer certificate", &self.cert))?;
        let key = PKey::private_key_from_pem(&read_file(&self.key)?)
            .map_err(load_err("signer key", &self.key))?;
        let mut chain = Stack::new().map_err(UpdaterError::Sign)?;
        for path in &self.intermediates {
            for cert in X509::stack_from_pem(&read_file(path)?)
                .map_err(load_err("intermediate certificate", path))?
            {
                chain.push(cert).map_err(UpdaterError::Sign)?;
            }
        }
        Ok(LoadedSigner { cert, key, chain })
    }
}

impl LoadedSigner {
    /// A secret only the holder of this signer's private key can compute: HMAC-SHA256 keyed
    /// by the key (DER) over `label` and `data`.
    pub(crate) fn derive_secret(&self, label: &[u8], data: &[u8]) -> Result<[u8; 32]> {
        let der = self.key.private_key_to_der().map_err(UpdaterError::Sign)?;
        let hmac = PKey::hmac(&der).map_err(UpdaterError::Sign)?;
        let mut mac = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &hmac)
            .map_err(UpdaterError::Sign)?;
        mac.update(label).map_err(UpdaterError::Sign)?;
        mac.update(data).map_err(UpdaterError::Sign)?;
        let bytes = mac.sign_to_vec().map_err(UpdaterError::Sign)?;
        bytes
            .try_into()
            .map_err(|_| UpdaterError::Sign(openssl::error::ErrorStack::get()))
    }
}

/// RAUC's flags plus no signed attributes: OpenSSL 3.0 always adds a signing time to them
/// (`CMS_NO_SIGNING_TIME` arrived in 3.2), and without them the signature covers the content
/// itself, so the same content signed twice gives the same CMS (with the ECDSA nonce made
/// deterministic, see [`crate::deterministic_ecdsa`]). RAUC verifies such signatures.
fn sign_flags() -> CMSOptions {
    CMSOptions::BINARY | CMSOptions::NOSMIMECAP | CMSOptions::NOATTR
}

/// Signs `content` with the content embedded (verity bundles: the content is the manifest).
pub fn sign_inline(content: &[u8], signer: &LoadedSigner) -> Result<Vec<u8>> {
    let cms = CmsContentInfo::sign(
        Some(&signer.cert),
        Some(&signer.key),
        Some(&signer.chain),
        Some(content),
        sign_flags(),
    )
    .map_err(UpdaterError::Sign)?;
    let der = cms.to_der().map_err(UpdaterError::Sign)?;
    let digest: [u8; 32] = sha2::Sha256::digest(content).into();
    crate::deterministic_ecdsa::make_deterministic(der, &signer.key, &digest)
}

/// Signs the bytes read from `content` as a detached signature (plain bundles), streaming.
pub fn sign_detached(content: impl Read + Send, signer: &LoadedSigner) -> Result<Vec<u8>> {
    let hashing = std::sync::Arc::new(std::sync::Mutex::new(sha2::Sha256::new()));
    let content = HashingReader {
        inner: content,
        hasher: std::sync::Arc::clone(&hashing),
    };
    let der = with_fd_bio(content, "payload", |bio| {
        // SAFETY: every pointer is valid for the call: the cert, key and stack are owned by
        // `signer`, `bio` is a live fd BIO; CMS_sign does not take ownership of any of them.
        let cms = unsafe {
            openssl_sys::CMS_sign(
                signer.cert.as_ptr(),
                signer.key.as_ptr(),
                signer.chain.as_ptr(),
                bio,
                (sign_flags() | CMSOptions::DETACHED).bits(),
            )
        };
        if cms.is_null() {
            return Err(UpdaterError::Sign(openssl::error::ErrorStack::get()));
        }
        // SAFETY: `cms` is a non-null, freshly allocated ContentInfo we now own.
        let cms = unsafe { CmsContentInfo::from_ptr(cms) };
        cms.to_der().map_err(UpdaterError::Sign)
    })??;
    let digest: [u8; 32] = hashing
        .lock()
        .map(|hasher| hasher.clone().finalize().into())
        .map_err(|_| UpdaterError::DeterministicSignature {
            detail: "payload hasher poisoned".into(),
        })?;
    crate::deterministic_ecdsa::make_deterministic(der, &signer.key, &digest)
}

/// Passes bytes through while hashing them (the payload OpenSSL signs, hashed once more for
/// the deterministic signature).
struct HashingReader<R> {
    inner: R,
    hasher: std::sync::Arc<std::sync::Mutex<sha2::Sha256>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut hasher) = self.hasher.lock() {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Which certificate purpose the signer must have (RAUC's `[keyring] check-purpose=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckPurpose {
    /// OpenSSL's default for CMS, as RAUC: S/MIME signing (no EKU, or emailProtection).
    #[default]
    SmimeSign,
    /// codeSigning EKU required.
    CodeSign,
    /// No purpose check.
    Any,
}

impl std::str::FromStr for CheckPurpose {
    type Err = UpdaterError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "smimesign" => Ok(CheckPurpose::SmimeSign),
            "codesign" => Ok(CheckPurpose::CodeSign),
            "any" => Ok(CheckPurpose::Any),
            other => Err(UpdaterError::SystemConf {
                message: format!("unknown check-purpose {other:?} (smimesign, codesign, any)"),
            }),
        }
    }
}

/// An extra rule on who may sign, beyond chaining to the keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedSigner {
    /// The signer certificate's subject common name equals this.
    CommonName(String),
    /// The sha256 of the signer's SubjectPublicKeyInfo (DER) equals this.
    SpkiSha256([u8; 32]),
}

/// Trusted CA certificates plus the policy bundles are checked with.
pub struct Keyring {
    store: X509Store,
    allowed_signers: Vec<AllowedSigner>,
    purpose: CheckPurpose,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("allowed_signers", &self.allowed_signers)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Loads every certificate of the PEM file `path` as a trust anchor.
    pub fn load(path: &Path, purpose: CheckPurpose) -> Result<Self> {
        let certs = X509::stack_from_pem(&read_file(path)?).map_err(load_err("keyring", path))?;
        if certs.is_empty() {
            return Err(UpdaterError::LoadCrypto {
                what: "keyring",
                path: path.to_path_buf(),
                source: openssl::error::ErrorStack::get(),
            });
        }
        let mut builder = X509StoreBuilder::new().map_err(load_err("keyring", path))?;
        for cert in certs {
            builder.add_cert(cert).map_err(load_err("keyring", path))?;
        }
        let store_purpose = match purpose {
            CheckPurpose::SmimeSign => Some(X509PurposeId::SMIME_SIGN),
            // OpenSSL 3.0 has no codeSigning purpose: accept any here and check the EKU of
            // the signer after verification, as RAUC does.
            CheckPurpose::CodeSign => Some(X509PurposeId::ANY),
            CheckPurpose::Any => Some(X509PurposeId::ANY),
        };
        if let Some(store_purpose) = store_purpose {
            builder
                .set_purpose(store_purpose)
                .map_err(load_err("keyring", path))?;
        }
        Ok(Keyring {
            store: builder.build(),
            allowed_signers: Vec::new(),
            purpose,
        })
    }

    /// Adds a rule; with one or more rules, the signer must match at least one.
    pub fn allow_signer(&mut self, rule: AllowedSigner) {
        self.allowed_signers.push(rule);
    }
}

/// One certificate of the verified chain, for display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// Subject in OpenSSL's one-line form (`CN = ...`).
    pub subject: String,
    /// Issuer in the same form.
    pub issuer: String,
    /// sha256 of the SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// notBefore.
    pub not_before: String,
    /// notAfter.
    pub not_after: String,
}

/// What a successful verification tells: the signer and its chain to the keyring.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedSigner {
    /// The chain, signer first, trust anchor last.
    pub chain: Vec<CertInfo>,
}

impl VerifiedSigner {
    /// The signer certificate's subject.
    pub fn subject(&self) -> &str {
        self.chain.first().map_or("", |c| c.subject.as_str())
    }
}

fn subject_of(cert: &X509) -> String {
    name_to_string(cert.subject_name())
}

fn name_to_string(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key} = {value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn cert_info(cert: &openssl::x509::X509Ref) -> CertInfo {
    let spki = cert
        .public_key()
        .and_then(|k| k.public_key_to_der())
        .map(|der| hex::encode(openssl::sha::sha256(&der)))
        .unwrap_or_default();
    CertInfo {
        subject: name_to_string(cert.subject_name()),
        issuer: name_to_string(cert.issuer_name()),
        spki_sha256: spki,
        not_before: cert.not_before().to_string(),
        not_after: cert.not_after().to_string(),
    }
}

fn verify_flags() -> CMSOptions {
    CMSOptions::BINARY
}

/// Verifies an inline signature and returns the signed content (the manifest) and signer.
pub fn verify_inline(
    der: &[u8],
    keyring: &Keyring,
    bundle: &Path,
) -> Result<(Vec<u8>, VerifiedSigner)> {
    let verify_err = |source| UpdaterError::VerifySignature {
        path: bundle.to_path_buf(),
        source,
    };
    let mut cms = CmsContentInfo::from_der(der).map_err(verify_err)?;
    let mut content = Vec::new();
    cms.verify(
        None,
        Some(&keyring.store),
        None,
        Some(&mut content),
        verify_flags(),
    )
    .map_err(verify_err)?;
    let signer = signer_of(&cms, keyring, bundle)?;
    Ok((content, signer))
}

/// Verifies a detached signature over the bytes read from `content`, streaming them.
pub fn verify_detached(
    der: &[u8],
    content: impl Read + Send,
    keyring: &Keyring,
    bundle: &Path,
) -> Result<VerifiedSigner> {
    let verify_err = |source| UpdaterError::VerifySignature {
        path: bundle.to_path_buf(),
        source,
    };
    let cms = CmsContentInfo::from_der(der).map_err(verify_err)?;
    with_fd_bio(content, "payload", |bio| {
        // SAFETY: `cms` and the store are live for the call; `bio` is a live fd BIO; a null
        // cert stack and null output BIO are allowed by CMS_verify; nothing is taken over.
        let ok = unsafe {
            openssl_sys::CMS_verify(
                cms.as_ptr(),
                std::ptr::null_mut(),
                keyring.store.as_ptr(),
                bio,
                std::ptr::null_mut(),
                verify_flags().bits(),
            )
        };
        if ok != 1 {
            return Err(verify_err(openssl::error::ErrorStack::get()));
        }
        Ok(())
    })??;
    signer_of(&cms, keyring, bundle)
}

extern "C" {
    fn CMS_get0_signers(cms: *mut openssl_sys::CMS_ContentInfo) -> *mut openssl_sys::stack_st_X509;
    fn CMS_get1_certs(cms: *mut openssl_sys::CMS_ContentInfo) -> *mut openssl_sys::stack_st_X509;
    fn BIO_new_fd(fd: std::ffi::c_int, close_flag: std::ffi::c_int) -> *mut openssl_sys::BIO;
}

/// The signer of an already verified `cms`, its chain, and the allowed-signer check.
fn signer_of(cms: &CmsContentInfo, keyring: &Keyring, bundle: &Path) -> Result<VerifiedSigner> {
    let verify_err = |source| UpdaterError::VerifySignature {
        path: bundle.to_path_buf(),
        source,
    };
    let signer = first_signer(cms).map_err(verify_err)?;
    let embedded = embedded_certs(cms).map_err(verify_err)?;
    let mut context = X509StoreContext::new().map_err(verify_err)?;
    let chain = context
        .init(&keyring.store, &signer, &embedded, |ctx| {
            ctx.verify_cert()?;
            Ok(ctx
                .chain()
                .map(|chain| chain.iter().map(cert_info).collect::<Vec<_>>())
                .unwrap_or_default())
        })
        .map_err(verify_err)?;
    // The verified chain starts with the signer itself.
    let verified = VerifiedSigner {
        chain: if chain.is_empty() {
            vec![cert_info(&signer)]
        } else {
            chain
        },
    };
    check_signer_rules(keyring, &signer, &verified)?;
    Ok(verified)
}

/// The (first) signer certificate of a verified `cms`.
fn first_signer(cms: &CmsContentInfo) -> std::result::Result<X509, ErrorStack> {
    // SAFETY: `cms` was verified, so CMS_get0_signers returns a new stack (owned by us, freed
    // below with OPENSSL_sk_free) whose elements are borrowed from `cms`; we take our own
    // reference on the first one with X509_up_ref before wrapping it.
    unsafe {
        let stack = CMS_get0_signers(cms.as_ptr());
        if stack.is_null() {
            return Err(ErrorStack::get());
        }
        let count = openssl_sys::OPENSSL_sk_num(stack.cast());
        let first = if count >= 1 {
            openssl_sys::OPENSSL_sk_value(stack.cast(), 0).cast::<openssl_sys::X509>()
        } else {
            std::ptr::null_mut()
        };
        if !first.is_null() {
            openssl_sys::X509_up_ref(first);
        }
        openssl_sys::OPENSSL_sk_free(stack.cast());
        if first.is_null() {
            return Err(ErrorStack::get());
        }
        Ok(X509::from_ptr(first))
    }
}

/// The certificates embedded in `cms` (intermediates), possibly none.
fn embedded_certs(cms: &CmsContentInfo) -> std::result::Result<Stack<X509>, ErrorStack> {
    // SAFETY: CMS_get1_certs returns a new stack with a reference on each certificate (or
    // null when there are none); `Stack::from_ptr` takes ownership of both.
    unsafe {
        let stack = CMS_get1_certs(cms.as_ptr());
        if stack.is_null() {
            Stack::new()
        } else {
            Ok(Stack::from_ptr(stack))
        }
    }
}

/// The keyring's purpose check (codesign needs the codeSigning EKU) and allowed-signer rules.
fn check_signer_rules(keyring: &Keyring, signer: &X509, verified: &VerifiedSigner) -> Result<()> {
    if keyring.purpose == CheckPurpose::CodeSign {
        // SAFETY: `signer` is a live certificate; the calls only compute and read its cached
        // extension flags.
        let (flags, usage) = unsafe {
            (
                openssl_sys::X509_get_extension_flags(signer.as_ptr()),
                openssl_sys::X509_get_extended_key_usage(signer.as_ptr()),
            )
        };
        // Without an EKU extension OpenSSL reports "every usage"; codesign requires one.
        if flags & openssl_sys::EXFLAG_XKUSAGE == 0 || usage & openssl_sys::XKU_CODE_SIGN == 0 {
            return Err(UpdaterError::SignerNotAllowed {
                subject: format!(
                    "{} (lacks the codeSigning extended key usage)",
                    verified.subject()
                ),
            });
        }
    }
    if keyring.allowed_signers.is_empty() {
        return Ok(());
    }
    let common_name = signer
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok());
    let spki_sha256 = verified.chain.first().map(|c| c.spki_sha256.as_str());
    let allowed = keyring.allowed_signers.iter().any(|rule| match rule {
        AllowedSigner::CommonName(cn) => common_name.as_deref() == Some(cn.as_str()),
        AllowedSigner::SpkiSha256(hash) => spki_sha256 == Some(hex::encode(hash).as_str()),
    });
    if allowed {
        Ok(())
    } else {
        Err(UpdaterError::SignerNotAllowed {
            subject: verified.subject().to_string(),
        })
    }
}

/// Runs `f` with an OpenSSL file-descriptor BIO whose bytes come from `content`, copied into a
/// pipe by a helper thread (bounded memory: one pipe buffer plus one copy buffer).
fn with_fd_bio<R: Send>(
    content: impl Read + Send,
    what: &str,
    f: impl FnOnce(*mut openssl_sys::BIO) -> R,
) -> Result<R> {
    let (reader, writer) = io::pipe().map_err(read_err(what))?;
    std::thread::scope(|scope| {
        let feeder = scope.spawn(move || -> io::Result<()> {
            let mut content = content;
            let mut writer = writer;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match content.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                match writer.write_all(&buf[..n]) {
                    Ok(()) => {}
                    // The consumer stopped early (it failed); its error is reported instead.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        // SAFETY: the fd belongs to `reader`, which outlives the BIO (BIO_NOCLOSE = 0: the BIO
        // does not close it); the BIO is freed before `reader` is dropped.
        let bio = unsafe { BIO_new_fd(reader.as_raw_fd(), 0) };
        if bio.is_null() {
            drop(reader);
            let _ = feeder.join();
            return Err(UpdaterError::Sign(openssl::error::ErrorStack::get()));
        }
        let result = f(bio);
        // SAFETY: `bio` was created above and is not used after this point.
        unsafe { openssl_sys::BIO_free_all(bio) };
        drop(reader);
        match feeder.join() {
            Ok(Ok(())) => Ok(result),
            Ok(Err(source)) => Err(UpdaterError::Read {
                path: PathBuf::from(what),
                source,
            }),
            Err(_) => Err(UpdaterError::Read {
                path: PathBuf::from(what),
                source: io::Error::other("payload reader thread panicked"),
            }),
        }
    })
}
