//! The plan's `cloud` section as the agent component receives it: `testudo-init` passes it in
//! the environment of the component that provides `identity` (the `CLOUD_*` variables of
//! `testudo_plan::env`).

use serde_json::json;
use testudo_plan::env::{
    CLOUD_DEVICE_ID as DEVICE_ID_ENV, CLOUD_DPS_SCOPE as DPS_SCOPE_ENV, CLOUD_HUB as HUB_ENV,
    CLOUD_IDENTITY as IDENTITY_ENV, CLOUD_PORT as PORT_ENV,
};

/// Who this device is in the cloud and how it proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// IoT Hub host name (empty when the plan names none).
    pub hub: String,
    /// Device id (empty when the plan names none).
    pub device_id: String,
    /// `tpm_sas`, `sas` or `x509`.
    pub identity: String,
    /// DPS id scope.
    pub dps_scope: Option<String>,
    /// MQTT/TLS port.
    pub port: u16,
}

impl CloudSettings {
    /// Reads the settings through `var` (the process environment in production).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let text = |name: &str| var(name).map(|v| v.trim().to_owned()).unwrap_or_default();
        let port = match var(PORT_ENV) {
            None => 8883,
            Some(port) => port
                .trim()
                .parse()
                .map_err(|_| format!("{PORT_ENV}={port:?} is not a port number"))?,
        };
        Ok(Self {
            hub: text(HUB_ENV),
            device_id: text(DEVICE_ID_ENV),
            identity: text(IDENTITY_ENV),
            dps_scope: var(DPS_SCOPE_ENV).filter(|scope| !scope.trim().is_empty()),
            port,
        })
    }

    /// No cloud configuration at all (the agent serves its schemes and stays offline).
    pub fn unconfigured() -> Self {
        Self {
            hub: String::new(),
            device_id: String::new(),
            identity: String::new(),
            dps_scope: None,
            port: 8883,
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// What is missing before the agent can connect at all, if anything.
    pub fn missing(&self) -> Option<&'static str> {
        if self.hub.is_empty() {
            Some("the plan names no hub (cloud.hub)")
        } else if self.device_id.is_empty() {
            Some("the plan names no device id (cloud.device_id)")
        } else {
            None
        }
    }

    /// The document the `identity` scheme serves: one JSON object and a newline.
    pub fn identity_document(&self) -> Vec<u8> {
        let mut text = json!({
            "device_id": self.device_id,
            "hub": self.hub,
            "identity": self.identity,
            "dps_scope": self.dps_scope,
        })
        .to_string();
        text.push('\n');
        text.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_the_cloud_section_and_defaults_the_port() {
        let settings = CloudSettings::from_vars(vars(&[
            (HUB_ENV, "hub.example"),
            (DEVICE_ID_ENV, "gw-1"),
            (IDENTITY_ENV, "sas"),
        ]))
        .expect("valid");
        assert_eq!(settings.port, 8883);
        assert_eq!(settings.missing(), None);
        let doc: serde_json::Value =
            serde_json::from_slice(&settings.identity_document()).expect("json");
        assert_eq!(doc["device_id"], "gw-1");
        assert_eq!(doc["hub"], "hub.example");
        assert_eq!(doc["dps_scope"], serde_json::Value::Null);
    }

    #[test]
    fn missing_values_are_named_and_bad_ports_refused() {
        let settings = CloudSettings::from_vars(vars(&[])).expect("empty is valid");
        assert_eq!(
            settings.missing(),
            Some("the plan names no hub (cloud.hub)")
        );
        assert!(CloudSettings::from_vars(vars(&[(PORT_ENV, "x")])).is_err());
    }
}
