//! Turning command-line style choices (connection string or hub + device id, CA file, TPM or
//! software key, X.509 files) into an [`AgentConfig`]. Shared by the `testudo-agent` binary and
//! `testudo agent run`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{AgentConfig, Authentication};
use crate::connection_string::{ConnectionString, Credential};
use crate::error::{AgentError, Result};
use crate::tls::{ClientIdentity, TlsSettings};
use crate::tpm::TpmHmacSigner;
use crate::tpm_x509::TpmEcdsaKey;

/// How to run one device.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Device connection string (`HostName=..;DeviceId=..;SharedAccessKey=..` or `x509=true`).
    pub connection_string: Option<String>,
    /// Hub host name, when the key is in the TPM (no connection string needed).
    pub hub: Option<String>,
    /// Device id, with `hub`.
    pub device_id: Option<String>,
    /// PEM CA the hub's certificate chains to.
    pub ca: PathBuf,
    /// TPM TCTI: sign SAS tokens with the key persisted at `key_handle`.
    pub tpm: Option<String>,
    /// Persistent handle of the SAS key in the TPM.
    pub key_handle: u32,
    /// PEM client certificate for X.509 authentication.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`; without it (and with `tpm`) the key is the TPM's
    /// ECDSA key at `key_handle`.
    pub client_key: Option<PathBuf>,
    /// Port to dial (default 8883).
    pub mqtt_port: Option<u16>,
    /// Address to dial instead of the hub host name.
    pub connect_host: Option<String>,
    /// SAS token lifetime in seconds (default 3600).
    pub token_ttl_secs: Option<u64>,
}

impl RunOptions {
    /// Builds the agent configuration (opens the TPM if asked to).
    pub fn into_config(self) -> Result<AgentConfig> {
        let bad = |reason: &str| AgentError::ParseConnectionString {
            reason: reason.to_string(),
        };
        let mut tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => TlsSettings::from_files(&self.ca, Some((cert, key)))?,
            (Some(cert), None) => {
                let Some(tcti) = &self.tpm else {
                    return Err(bad(
                        "--client-cert needs --client-key, or --tpm for a TPM-held key",
                    ));
                };
                let mut tls = TlsSettings::from_files(&self.ca, None)?;
                let cert = std::fs::read(cert).map_err(|source| AgentError::ReadFile {
                    path: cert.clone(),
                    source,
                })?;
                let key = Arc::new(TpmEcdsaKey::open(tcti, self.key_handle)?);
                tls.client_identity = Some(ClientIdentity::Tpm { cert, key });
                tls
            }
            (None, Some(_)) => return Err(bad("--client-key needs --client-cert")),
            (None, None) => TlsSettings::from_files(&self.ca, None)?,
        };
        let ttl = Duration::from_secs(self.token_ttl_secs.unwrap_or(3600).max(5));
        let mut config = match (&self.connection_string, &self.hub, &self.device_id) {
            (Some(text), None, None) => {
                let cs = ConnectionString::parse(text)?;
                let mut config = AgentConfig::from_connection_string(&cs, tls)?;
                if let (Some(tcti), Credential::SharedAccessKey(_)) = (&self.tpm, &cs.credential) {
                    // The TPM holds the key; the one in the string is not used.
                    config.auth = tpm_auth(tcti, self.key_handle, ttl)?;
                }
                config
            }
            (None, Some(hub), Some(device)) => {
                let auth = match (&self.tpm, &self.client_cert) {
                    (_, Some(_)) => Authentication::X509,
                    (Some(tcti), None) => tpm_auth(tcti, self.key_handle, ttl)?,
                    (None, None) => {
                        return Err(bad("with --hub/--device-id give --tpm or --client-cert"))
                    }
                };
                AgentConfig::new(hub, device, std::mem::take(&mut tls), auth)
            }
            _ => {
                return Err(bad(
                    "give either a connection string or both --hub and --device-id",
                ))
            }
        };
        if let Authentication::Sas { token_ttl, .. } = &mut config.auth {
            *token_ttl = ttl;
        }
        if let Some(port) = self.mqtt_port {
            config.port = port;
        }
        if let Some(host) = self.connect_host {
            config.connect_host = host;
        }
        Ok(config)
    }
}

fn tpm_auth(tcti: &str, handle: u32, ttl: Duration) -> Result<Authentication> {
    Ok(Authentication::Sas {
        signer: Arc::new(TpmHmacSigner::open(tcti, handle)?),
        token_ttl: ttl,
    })
}
