//! What one agent needs to run: identity, trust, where to dial, and the robustness knobs.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::connection_string::{ConnectionString, Credential};
use crate::dial::Dialer;
use crate::error::Result;
use crate::sas::{SasSigner, SoftwareKey};
use crate::tls::TlsSettings;
use crate::topics;

/// How the device authenticates.
#[derive(Clone)]
pub enum Authentication {
    /// SAS tokens signed by `signer`, each valid for `token_ttl`.
    Sas {
        /// Computes the HMAC (software key or TPM).
        signer: Arc<dyn SasSigner>,
        /// Lifetime of each token (its `se`, in whole seconds, is now plus this); renewed
        /// once 80 % of the time left until that expiry has passed (`sas::renewal_delay`).
        token_ttl: Duration,
    },
    /// X.509 client certificate (set in [`TlsSettings::client_identity`]).
    X509,
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sas { token_ttl, .. } => f
                .debug_struct("Sas")
                .field("token_ttl", token_ttl)
                .finish_non_exhaustive(),
            Self::X509 => f.write_str("X509"),
        }
    }
}

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Hub host name (used in the username and the SAS resource).
    pub host_name: String,
    /// Device id.
    pub device_id: String,
    /// Module id, for module identities.
    pub module_id: Option<String>,
    /// IoT Plug and Play model id announced in the MQTT username.
    pub model_id: Option<String>,
    /// Address to dial (the hub host name unless a gateway or test setup says otherwise).
    pub connect_host: String,
    /// MQTT over TLS port (8883).
    pub port: u16,
    /// Trust anchor and optional client certificate.
    pub tls: TlsSettings,
    /// SAS or X.509.
    pub auth: Authentication,
    /// MQTT keep-alive (IoT Hub allows at most 1177 s).
    pub keep_alive: Duration,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// How long a twin request may wait for its answer before the connection is presumed dead.
    pub request_timeout: Duration,
    /// Longest wait for in-flight acknowledgements before a token-renewal reconnect.
    pub drain_timeout: Duration,
    /// Offline queue capacity for reported patches.
    pub reported_capacity: usize,
    /// Offline queue capacity for telemetry.
    pub telemetry_capacity: usize,
    /// Most unacknowledged publishes at once.
    pub max_in_flight: usize,
    /// How the TCP connection to `connect_host:port` is made. `None`: the MQTT client dials
    /// and runs TLS itself. `Some`: the dialer makes the connection (e.g. through the `net`
    /// route inside a sandbox without a network) and the agent runs TLS over it.
    pub dialer: Option<Arc<dyn Dialer>>,
    /// Sign SAS tokens on the runtime thread instead of a blocking thread (the agent
    /// component: its seccomp role allows no further threads; its TPM signer is one short
    /// exchange with the `tpm` driver). `false` by default.
    pub sign_inline: bool,
}

impl AgentConfig {
    /// A configuration with defaults for everything but identity and trust.
    pub fn new(host_name: &str, device_id: &str, tls: TlsSettings, auth: Authentication) -> Self {
        Self {
            host_name: host_name.to_string(),
            device_id: device_id.to_string(),
            module_id: None,
            model_id: None,
            connect_host: host_name.to_string(),
            port: 8883,
            tls,
            auth,
            keep_alive: Duration::from_secs(60),
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            reported_capacity: 256,
            telemetry_capacity: 1024,
            max_in_flight: 16,
            dialer: None,
            sign_inline: false,
        }
    }

    /// A configuration from a device connection string (software key; use
    /// [`AgentConfig::new`] with a TPM signer to keep the key out of memory).
    pub fn from_connection_string(cs: &ConnectionString, tls: TlsSettings) -> Result<Self> {
        let auth = match &cs.credential {
            Credential::SharedAccessKey(key) => Authentication::Sas {
                signer: Arc::new(SoftwareKey::from_base64(key, &cs.device_id)?),
                token_ttl: Duration::from_secs(3600),
            },
            Credential::X509 => Authentication::X509,
        };
        let mut config = Self::new(&cs.host_name, &cs.device_id, tls, auth);
        config.module_id = cs.module_id.clone();
        if let Some(gateway) = &cs.gateway_host_name {
            config.connect_host = gateway.clone();
        }
        Ok(config)
    }

    pub(crate) fn client_id(&self) -> String {
        match &self.module_id {
            Some(module) => format!("{}/{module}", self.device_id),
            None => self.device_id.clone(),
        }
    }

    pub(crate) fn resource_uri(&self) -> String {
        format!(
            "{}/devices/{}",
            self.host_name,
            self.client_id().replace('/', "/modules/")
        )
    }

    pub(crate) fn telemetry_topic(&self, properties: &str) -> String {
        match &self.module_id {
            Some(module) => format!(
                "devices/{}/modules/{module}/messages/events/{properties}",
                self.device_id
            ),
            None => topics::telemetry(&self.device_id, properties),
        }
    }
}
