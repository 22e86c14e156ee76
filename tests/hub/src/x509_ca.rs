//! X.509 CA attestation, as DPS enrollment groups and IoT Hub's "CA-signed" devices do it: the
//! client certificate chain a device presents in the TLS handshake must chain to a CA the
//! enrollment group holds (checked with webpki, for client authentication, at the current
//! time), and the leaf's subject common name is the registration id (and device id) it may
//! use. The CAs of the X.509 enrollment groups are also the hub's verified CAs: a device
//! provisioned through such a group connects with the same chain.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::error::HubError;

/// The client certificate a device presented: its thumbprints (for self-signed devices and
/// individual enrollments) and the whole chain (for CA-signed ones).
#[derive(Debug, Clone)]
pub struct PresentedCertificate {
    /// SHA-1 and SHA-256 thumbprints of the leaf (uppercase hex).
    pub thumbprints: [String; 2],
    /// Leaf first, then the intermediates the device sent.
    pub chain: Vec<CertificateDer<'static>>,
}

impl PresentedCertificate {
    /// The presented chain, or `None` when the device sent no certificate.
    pub fn from_chain<C: AsRef<[u8]>>(chain: &[C]) -> Option<Self> {
        let leaf = chain.first()?;
        Some(Self {
            thumbprints: crate::tls::thumbprints(leaf.as_ref()),
            chain: chain
                .iter()
                .map(|cert| CertificateDer::from(cert.as_ref().to_vec()))
                .collect(),
        })
    }

    /// Whether this chain was issued (directly or through the intermediates presented) by
    /// the CA in `ca_pem` for client authentication, is valid at `now` (Unix seconds), and
    /// names `id` as its subject's common name.
    pub fn is_issued_for(&self, ca_pem: &str, id: &str, now: u64) -> bool {
        let Some((leaf, intermediates)) = self.chain.split_first() else {
            return false;
        };
        let Ok(ca) = ca_certificate(ca_pem) else {
            return false;
        };
        let mut roots = RootCertStore::empty();
        if roots.add(ca).is_err() {
            return false;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let Ok(verifier) =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()
        else {
            return false;
        };
        let now = UnixTime::since_unix_epoch(Duration::from_secs(now));
        verifier
            .verify_client_cert(leaf, intermediates, now)
            .is_ok()
            && common_name(leaf).as_deref() == Some(id)
    }
}

/// The one CA certificate in `pem`: refused unless it parses and is a CA (basic constraints).
pub fn ca_certificate(pem: &str) -> Result<CertificateDer<'static>, HubError> {
    let invalid = |reason: &'static str| HubError::InvalidSigningCertificate { reason };
    let mut reader = pem.as_bytes();
    let mut certs = rustls_pemfile::certs(&mut reader);
    let der = certs
        .next()
        .and_then(Result::ok)
        .ok_or(invalid("no PEM certificate"))?;
    if certs.next().is_some() {
        return Err(invalid("more than one certificate"));
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|_| invalid("the certificate does not parse as X.509"))?;
    if !parsed.is_ca() {
        return Err(invalid("the certificate is not a CA (basic constraints)"));
    }
    Ok(der)
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = parsed.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    }

    fn device(cn: &str, issuer: &Issuer<'_, KeyPair>) -> PresentedCertificate {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        PresentedCertificate::from_chain(&[cert.der().clone()]).unwrap()
    }

    fn now() -> u64 {
        crate::clock::unix_now()
    }

    #[test]
    fn a_chain_to_the_group_ca_naming_the_id_is_accepted_and_nothing_else() {
        let (ca_pem, issuer) = ca("Factory CA");
        let (other_pem, other) = ca("Other CA");
        let presented = device("dev-7", &issuer);
        assert!(presented.is_issued_for(&ca_pem, "dev-7", now()));
        assert!(
            !presented.is_issued_for(&ca_pem, "dev-8", now()),
            "CN is the id"
        );
        assert!(
            !presented.is_issued_for(&other_pem, "dev-7", now()),
            "other CA"
        );
        assert!(!device("dev-7", &other).is_issued_for(&ca_pem, "dev-7", now()));
        let after_2100 = 4_200_000_000; // 2103
        assert!(
            !presented.is_issued_for(&ca_pem, "dev-7", after_2100),
            "expired"
        );
    }

    #[test]
    fn only_a_single_ca_certificate_is_a_signing_certificate() {
        let (ca_pem, issuer) = ca("Factory CA");
        assert!(ca_certificate(&ca_pem).is_ok());
        let leaf = device("dev-7", &issuer);
        let leaf_pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &leaf.chain[0])
        );
        for (bad, reason) in [
            ("", "no PEM certificate"),
            (leaf_pem.as_str(), "not a CA"),
            (&format!("{ca_pem}{ca_pem}"), "more than one"),
        ] {
            let error = ca_certificate(bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{error}");
        }
    }
}
