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

/// How to run one device. Also the command-line arguments of `testudo-agent run` and
/// `testudo agent run`, so both front ends take exactly the same options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunOptions {
    /// Device connection string (`HostName=..;DeviceId=..;SharedAccessKey=..` or `x509=true`).
    #[arg(long)]
    pub connection_string: Option<String>,
    /// Hub host name, when the key is in the TPM or X.509 is used (no connection string needed).
    #[arg(long)]
    pub hub: Option<String>,
    /// Device id, with `--hub`.
    #[arg(long)]
    pub device_id: Option<String>,
    /// PEM CA the hub's certificate chains to.
    #[arg(long)]
    pub ca: PathBuf,
    /// TPM TCTI (e.g. `swtpm:host=127.0.0.1,port=2321`): sign SAS tokens inside the TPM with
    /// the key persisted at `--key-handle`.
    #[arg(long)]
    pub tpm: Option<String>,
    /// Persistent handle (hex) of the key in the TPM.
    #[arg(long, default_value = SAS_KEY_HANDLE, value_parser = parse_handle)]
    pub key_handle: u32,
    /// PEM client certificate for X.509 authentication.
    #[arg(long)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `--client-cert`; without it (and with `--tpm`) the key is the TPM's
    /// ECDSA key at `--key-handle`.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Port to dial (default 8883).
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// Address to dial instead of the hub host name (tests only; not a command-line option).
    #[arg(skip)]
    pub connect_host: Option<String>,
    /// SAS token lifetime in seconds (default 3600).
    #[arg(long = "token-ttl", value_name = "SECONDS")]
    pub token_ttl_secs: Option<u64>,
}

/// Arguments of `import-key`: put a base64 device key into the TPM as a persistent HMAC key.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportKeyOptions {
    /// TCTI, e.g. `swtpm:host=127.0.0.1,port=2321` or `device:/dev/tpmrm0`.
    #[arg(long)]
    pub tpm: String,
    /// Persistent handle (hex).
    #[arg(long, default_value = SAS_KEY_HANDLE, value_parser = parse_handle)]
    pub key_handle: u32,
    /// File holding the base64 key.
    #[arg(long)]
    pub key_file: PathBuf,
}

impl ImportKeyOptions {
    /// Reads the base64 key from [`Self::key_file`] and imports it into the TPM at
    /// [`Self::key_handle`] (what `testudo-agent import-key` and `testudo agent import-key` do).
    pub fn import(&self) -> Result<()> {
        let text =
            std::fs::read_to_string(&self.key_file).map_err(|source| AgentError::ReadFile {
                path: self.key_file.clone(),
                source,
            })?;
        crate::tpm::import_base64_hmac_key(&self.tpm, self.key_handle, &text)
    }

    /// The line both front ends print after a successful [`Self::import`].
    pub fn imported_message(&self) -> String {
        format!(
            "imported key into {} at {:#010x}",
            self.tpm, self.key_handle
        )
    }
}

/// Default persistent handle of the device's SAS key in the TPM ([`crate::tpm::DEFAULT_KEY_HANDLE`]
/// as a command-line default).
pub const SAS_KEY_HANDLE: &str = "0x81000100";
/// Default persistent handle of the device certificate's key in the TPM
/// ([`crate::tpm::X509_KEY_HANDLE`] as a command-line default).
pub const X509_KEY_HANDLE: &str = "0x81000101";

/// Parses a TPM handle written in hex, with or without `0x`.
pub fn parse_handle(text: &str) -> std::result::Result<u32, std::num::ParseIntError> {
    u32::from_str_radix(text.trim_start_matches("0x"), 16)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_default_handles_are_the_agents() {
        assert_eq!(
            parse_handle(SAS_KEY_HANDLE).unwrap(),
            crate::tpm::DEFAULT_KEY_HANDLE
        );
        assert_eq!(
            parse_handle(X509_KEY_HANDLE).unwrap(),
            crate::tpm::X509_KEY_HANDLE
        );
    }

    fn options(key_file: PathBuf) -> ImportKeyOptions {
        ImportKeyOptions {
            // Never reached: both cases fail before the TPM is opened.
            tpm: "swtpm:host=127.0.0.1,port=1".to_owned(),
            key_handle: 0x8100_0100,
            key_file,
        }
    }

    #[test]
    fn import_key_reports_an_unreadable_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = options(dir.path().join("missing")).import().unwrap_err();
        assert!(matches!(error, AgentError::ReadFile { .. }), "{error:?}");
    }

    #[test]
    fn import_key_rejects_a_key_that_is_not_base64_before_opening_the_tpm() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "not base64!\n").unwrap();
        let error = options(key_file).import().unwrap_err();
        assert!(matches!(error, AgentError::DecodeKey { .. }), "{error:?}");
        assert_eq!(
            options(PathBuf::from("k")).imported_message(),
            "imported key into swtpm:host=127.0.0.1,port=1 at 0x81000100"
        );
    }
}
