//! X.509 device identity with the private key in the TPM: an ECDSA P-256 key created inside the
//! TPM (never exported), a self-signed device certificate signed by it, and a rustls client
//! certificate resolver whose signatures are computed by TPM2_Sign.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Digest, EccScheme, HashScheme, HashcheckTicket, Signature, SignatureScheme as TpmScheme,
};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::utils::{create_unrestricted_signing_ecc_public, PublicKey};

use crate::error::{AgentError, Result};
use crate::tpm::{
    ensure_srk, find_persistent, persist, persistent, remove_persistent, tpm_err, TpmWorker,
};

/// Creates an ECDSA P-256 signing key inside the TPM (under the SRK) and persists it at
/// `handle`, replacing whatever was there.
pub fn create_ecdsa_key(tcti: &str, handle: u32) -> Result<()> {
    persistent(handle, tcti)?;
    let mut context = crate::tpm::open_context(tcti)?;
    let srk = ensure_srk(&mut context, tcti)?;
    remove_persistent(&mut context, handle, tcti)?;
    let template = create_unrestricted_signing_ecc_public(
        EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
        EccCurve::NistP256,
    )
    .map_err(tpm_err("build ECDSA key template", tcti))?;
    let created = context
        .execute_with_nullauth_session(|ctx| ctx.create(srk, template, None, None, None, None))
        .map_err(tpm_err("create ECDSA key", tcti))?;
    let loaded = context
        .execute_with_nullauth_session(|ctx| ctx.load(srk, created.out_private, created.out_public))
        .map_err(tpm_err("load ECDSA key", tcti))?;
    persist(&mut context, loaded, handle, tcti).map(|_| ())
}

/// A P-256 key that signs, wherever it is held: through a TCTI ([`TpmEcdsaKey`], tools and
/// tests on a host) or through the component's `tpm` route
/// ([`crate::tpm_route::TpmRouteEcdsaKey`], on a device).
pub trait EcdsaP256Key: std::fmt::Debug + Send + Sync {
    /// Signs SHA-256(`message`); returns the DER (X9.62) ECDSA signature.
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>>;
}

impl EcdsaP256Key for TpmEcdsaKey {
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>> {
        TpmEcdsaKey::sign_sha256(self, message)
    }
}

/// A device certificate and the thumbprint the hub registry or DPS enrollment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    /// PEM certificate.
    pub pem: String,
    /// SHA-256 of the DER certificate, upper-case hex.
    pub sha256_thumbprint: String,
}

/// A persistent TPM ECDSA P-256 key, usable for X.509 signing and TLS client authentication.
#[derive(Debug)]
pub struct TpmEcdsaKey {
    worker: TpmWorker,
    handle: u32,
    /// Uncompressed public point `04 || x || y`.
    public_point: Vec<u8>,
}

impl TpmEcdsaKey {
    /// Opens the key persisted at `handle`.
    pub fn open(tcti: &str, handle: u32) -> Result<Self> {
        let worker = TpmWorker::start(tcti)?;
        let public_point = worker.run(move |context, tcti| {
            let object =
                find_persistent(context, handle, tcti)?.ok_or_else(|| AgentError::TpmKey {
                    handle,
                    reason: "no key persisted at this handle".into(),
                })?;
            let (public, _, _) = context
                .read_public(object.into())
                .map_err(tpm_err("read public key", tcti))?;
            match PublicKey::try_from(public) {
                Ok(PublicKey::Ecc { x, y }) if x.len() <= 32 && y.len() <= 32 => {
                    let mut point = vec![4u8];
                    for coordinate in [x, y] {
                        point.extend(std::iter::repeat_n(0u8, 32 - coordinate.len()));
                        point.extend(coordinate);
                    }
                    Ok(point)
                }
                _ => Err(AgentError::TpmKey {
                    handle,
                    reason: "not an ECC P-256 key".into(),
                }),
            }
        })?;
        Ok(Self {
            worker,
            handle,
            public_point,
        })
    }

    /// Signs SHA-256(`message`) in the TPM; returns the DER (X9.62) ECDSA signature.
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>> {
        let handle = self.handle;
        let digest = Sha256::digest(message).to_vec();
        self.worker.run(move |context, tcti| {
            let object =
                find_persistent(context, handle, tcti)?.ok_or_else(|| AgentError::TpmKey {
                    handle,
                    reason: "no key persisted at this handle".into(),
                })?;
            let digest = Digest::try_from(digest).map_err(tpm_err("wrap digest", tcti))?;
            let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
                tag: TPM2_ST_HASHCHECK,
                hierarchy: TPM2_RH_NULL,
                digest: Default::default(),
            })
            .map_err(tpm_err("build null hashcheck ticket", tcti))?;
            let scheme = TpmScheme::EcDsa {
                hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
            };
            let signature = context
                .execute_with_nullauth_session(|ctx| {
                    ctx.sign(object.into(), digest, scheme, ticket)
                })
                .map_err(tpm_err("sign", tcti))?;
            match signature {
                Signature::EcDsa(ecc) => Ok(der_ecdsa_signature(
                    ecc.signature_r().value(),
                    ecc.signature_s().value(),
                )),
                _ => Err(AgentError::TpmKey {
                    handle,
                    reason: "TPM returned a non-ECDSA signature".into(),
                }),
            }
        })
    }

    /// A self-signed device certificate (CN = `common_name`) for this key, as PEM. Register its
    /// SHA-256 thumbprint with the hub (or the DPS enrollment).
    pub fn self_signed_certificate(&self, common_name: &str) -> Result<String> {
        self.device_certificate(common_name).map(|cert| cert.pem)
    }

    /// [`Self::self_signed_certificate`] with its SHA-256 thumbprint (upper-case hex).
    pub fn device_certificate(&self, common_name: &str) -> Result<DeviceCertificate> {
        let fail = |reason: String| AgentError::TpmKey {
            handle: self.handle,
            reason,
        };
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| fail(format!("certificate parameters: {e}")))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params
            .self_signed(self)
            .map_err(|e| fail(format!("signing the certificate: {e}")))?;
        Ok(DeviceCertificate {
            pem: cert.pem(),
            sha256_thumbprint: Sha256::digest(cert.der())
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect(),
        })
    }
}

impl rcgen::PublicKeyData for TpmEcdsaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TpmEcdsaKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.sign_sha256(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from big-endian unsigned `r` and `s`.
pub fn der_ecdsa_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let mut body = if trimmed.is_empty() { vec![0] } else { trimmed };
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    }
    let mut content = integer(r);
    content.extend(integer(s));
    let mut out = vec![0x30, content.len() as u8];
    out.extend(content);
    out
}

/// rustls adapter: TLS client authentication signatures computed by the TPM.
#[derive(Debug)]
struct TlsKey(Arc<dyn EcdsaP256Key>);

impl SigningKey for TlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(TlsSigner(self.0.clone())) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct TlsSigner(Arc<dyn EcdsaP256Key>);

impl Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, rustls::Error> {
        self.0
            .sign_sha256(message)
            .map_err(|err| rustls::Error::General(crate::agent::error_chain(&err)))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// Always presents the device certificate with its TPM-held key.
#[derive(Debug)]
pub(crate) struct TpmClientCert(Arc<CertifiedKey>);

impl TpmClientCert {
    pub(crate) fn new(chain: Vec<CertificateDer<'static>>, key: Arc<dyn EcdsaP256Key>) -> Self {
        Self(Arc::new(CertifiedKey::new(chain, Arc::new(TlsKey(key)))))
    }
}

impl rustls::client::ResolvesClientCert for TpmClientCert {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        schemes
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signature_encoding() {
        // High bit set -> leading zero; leading zeros trimmed.
        assert_eq!(
            der_ecdsa_signature(&[0x80, 1], &[0, 0, 5]),
            vec![0x30, 8, 2, 3, 0, 0x80, 1, 2, 1, 5]
        );
        assert_eq!(
            der_ecdsa_signature(&[0, 0], &[1]),
            vec![0x30, 6, 2, 1, 0, 2, 1, 1]
        );
    }
}
