//! TLS for both endpoints: a local CA (generated once with rcgen and kept in the state
//! directory), a server certificate for the hub host name signed by it, and a rustls server
//! configuration that asks for (but does not require) a client certificate so X.509
//! devices can authenticate by thumbprint.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::HubError;
use crate::store::{write_atomic, Store};

const CA_NAME: &str = "testudo hub emulator local CA";

/// PEM material of the hub's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// The CA certificate clients must trust (`DIR/ca.pem`).
    pub ca_pem: String,
    /// The server certificate chain (server, CA), PEM.
    pub server_chain_pem: String,
    /// The server private key, PEM.
    pub server_key_pem: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn read_text(path: &Path) -> Result<Option<String>, HubError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HubError::ReadState {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Makes the CA in `ca_dir` (`ca.pem`, `ca.key.pem`) the state directory's: copied when the
/// state has none, accepted when it has the same one, refused when it has another (the
/// server certificate and every device's trust anchors depend on it).
pub fn install_ca(store: &Store, ca_dir: &Path) -> Result<(), HubError> {
    let invalid = |problem| HubError::InvalidCa {
        dir: ca_dir.to_path_buf(),
        problem,
    };
    let given_cert = read_text(&ca_dir.join("ca.pem"))?.ok_or(invalid("no ca.pem"))?;
    let given_key = read_text(&ca_dir.join("ca.key.pem"))?.ok_or(invalid("no ca.key.pem"))?;
    KeyPair::from_pem(&given_key).map_err(|_| invalid("ca.key.pem is not a private key"))?;
    match read_text(&store.path("ca.pem"))? {
        Some(existing) if existing == given_cert => Ok(()),
        Some(_) => Err(invalid("the state directory already has another CA")),
        None => {
            write_atomic(&store.path("ca.key.pem"), given_key.as_bytes())?;
            write_atomic(&store.path("ca.pem"), given_cert.as_bytes())?;
            // A server certificate issued by a previous CA is not kept.
            let _ = std::fs::remove_file(store.path("server.host"));
            Ok(())
        }
    }
}

/// Loads the TLS identity from the state directory, creating the CA on first use and a
/// new server certificate whenever the host name changes.
pub fn load_or_create(store: &Store, host: &str) -> Result<TlsIdentity, HubError> {
    let ca_path = store.path("ca.pem");
    let ca_key_path = store.path("ca.key.pem");
    let ca_error = |source| HubError::GenerateCertificate { what: "CA", source };
    let (ca_pem, ca_key) = match (read_text(&ca_path)?, read_text(&ca_key_path)?) {
        (Some(pem), Some(key_pem)) => {
            let key = KeyPair::from_pem(&key_pem).map_err(|_| HubError::InvalidPem {
                path: ca_key_path.clone(),
            })?;
            (pem, key)
        }
        _ => {
            let key = KeyPair::generate().map_err(ca_error)?;
            let cert = ca_params()
                .and_then(|p| p.self_signed(&key))
                .map_err(ca_error)?;
            let pem = cert.pem();
            write_atomic(&ca_key_path, key.serialize_pem().as_bytes())?;
            write_atomic(&ca_path, pem.as_bytes())?;
            (pem, key)
        }
    };
    let server_path = store.path("server.pem");
    let server_key_path = store.path("server.key.pem");
    let host_path = store.path("server.host");
    let stored = (
        read_text(&server_path)?,
        read_text(&server_key_path)?,
        read_text(&host_path)?,
    );
    let (server_pem, server_key_pem) = match stored {
        (Some(pem), Some(key), Some(stored_host)) if stored_host == host => (pem, key),
        _ => {
            let server_error = |source| HubError::GenerateCertificate {
                what: "server",
                source,
            };
            let issuer = Issuer::new(ca_params().map_err(ca_error)?, &ca_key);
            let key = KeyPair::generate().map_err(server_error)?;
            let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(server_error)?;
            params.distinguished_name.push(DnType::CommonName, host);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            let cert = params.signed_by(&key, &issuer).map_err(server_error)?;
            let (pem, key_pem) = (cert.pem(), key.serialize_pem());
            write_atomic(&server_key_path, key_pem.as_bytes())?;
            write_atomic(&server_path, pem.as_bytes())?;
            write_atomic(&host_path, host.as_bytes())?;
            (pem, key_pem)
        }
    };
    Ok(TlsIdentity {
        server_chain_pem: format!("{server_pem}{ca_pem}"),
        ca_pem,
        server_key_pem,
    })
}

/// The rustls server configuration (ring provider; client certificates optional).
pub fn server_config(
    identity: &TlsIdentity,
    alpn_http: bool,
) -> Result<Arc<ServerConfig>, HubError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut identity.server_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| HubError::InvalidPem {
                path: "server.pem".into(),
            })?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut identity.server_key_pem.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| HubError::InvalidPem {
                path: "server.key.pem".into(),
            })?;
    let verifier = Arc::new(AnyClientCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HubError::TlsConfig)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(HubError::TlsConfig)?;
    if alpn_http {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// SHA-1 and SHA-256 thumbprints (uppercase hex) of a DER certificate, as IoT Hub shows them.
pub fn thumbprints(der: &[u8]) -> [String; 2] {
    [
        hex::encode_upper(Sha1::digest(der)),
        hex::encode_upper(Sha256::digest(der)),
    ]
}

/// Accepts any client certificate whose handshake signature is valid (proof of possession);
/// the device registry then decides by thumbprint, as IoT Hub does for self-signed devices.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A rustls client configuration trusting only `ca_pem` (for the CLI and tests).
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, HubError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let cert = cert.map_err(|_| HubError::InvalidPem {
            path: "ca.pem".into(),
        })?;
        roots.add(cert).map_err(HubError::TlsConfig)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HubError::TlsConfig)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
