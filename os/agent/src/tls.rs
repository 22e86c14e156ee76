//! TLS client configuration (rustls with the `ring` provider, chosen explicitly so the result does
//! not depend on which rustls provider features other crates in the build enable).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::error::{AgentError, Result};
use crate::tpm_x509::{EcdsaP256Key, TpmClientCert};

/// The device's X.509 client identity.
#[derive(Debug, Clone)]
pub enum ClientIdentity {
    /// PEM certificate chain and PEM private key (the key is in memory).
    Pem {
        /// Certificate chain.
        cert: Vec<u8>,
        /// Private key.
        key: Vec<u8>,
    },
    /// PEM certificate chain whose ECDSA P-256 key stays in the TPM.
    Tpm {
        /// Certificate chain.
        cert: Vec<u8>,
        /// The TPM key (through a TCTI or the `tpm` route).
        key: Arc<dyn EcdsaP256Key>,
    },
}

/// Where the hub's trust anchor and the device's optional client certificate come from.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM CA certificate(s) the hub's certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// Client certificate and key, for X.509 authentication.
    pub client_identity: Option<ClientIdentity>,
}

impl TlsSettings {
    /// Reads the CA (and optionally the client certificate and key) from files.
    pub fn from_files(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| AgentError::ReadFile {
                path: PathBuf::from(path),
                source,
            })
        };
        let client_identity = match client {
            Some((cert, key)) => Some(ClientIdentity::Pem {
                cert: read(cert)?,
                key: read(key)?,
            }),
            None => None,
        };
        Ok(Self {
            ca_pem: read(ca)?,
            client_identity,
        })
    }

    /// Builds the rustls configuration for connecting to `host`.
    pub fn client_config(&self, host: &str) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        let cas = parse_certs(&self.ca_pem, "CA certificate", host)?;
        for ca in cas {
            roots.add(ca).map_err(|source| AgentError::ConfigureTls {
                host: host.into(),
                source,
            })?;
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|source| AgentError::ConfigureTls {
                    host: host.into(),
                    source,
                })?
                .with_root_certificates(roots);
        let config = match &self.client_identity {
            None => builder.with_no_client_auth(),
            Some(ClientIdentity::Pem { cert, key }) => {
                let chain = parse_certs(cert, "client certificate", host)?;
                let key = parse_key(key, host)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|source| AgentError::ConfigureTls {
                        host: host.into(),
                        source,
                    })?
            }
            Some(ClientIdentity::Tpm { cert, key }) => {
                let chain = parse_certs(cert, "client certificate", host)?;
                builder.with_client_cert_resolver(Arc::new(TpmClientCert::new(chain, key.clone())))
            }
        };
        Ok(Arc::new(config))
    }
}

fn parse_certs(pem: &[u8], what: &'static str, host: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| AgentError::ParsePem {
            what,
            origin: format!("TLS settings for {host}"),
        })?;
    if certs.is_empty() {
        return Err(AgentError::ParsePem {
            what,
            origin: format!("TLS settings for {host}"),
        });
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], host: &str) -> Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut &pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| AgentError::ParsePem {
            what: "private key",
            origin: format!("TLS settings for {host}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_ca_is_a_clear_error() {
        let settings = TlsSettings {
            ca_pem: b"not a pem".to_vec(),
            client_identity: None,
        };
        let err = settings.client_config("hub").unwrap_err();
        assert!(matches!(
            err,
            AgentError::ParsePem {
                what: "CA certificate",
                ..
            }
        ));
    }
}
