//! The plan's `cloud` section as the agent component receives it: `testudo-init` passes it as
//! JSON ([`testudo_plan::CloudConfig`]) in [`testudo_plan::env::CLOUD`] to the component that
//! provides `identity`.

use serde_json::json;
use testudo_plan::{CloudConfig, DpsConfig};

/// Why the cloud section in the environment cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is not a cloud section")]
pub struct CloudSettingsError {
    /// The variable read.
    pub variable: &'static str,
    /// What is wrong with its JSON.
    #[source]
    pub source: serde_json::Error,
}

/// Who this device is in the cloud and how it proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSettings {
    /// IoT Hub host name (empty when the plan names none).
    pub hub: String,
    /// Device id (empty when the plan names none).
    pub device_id: String,
    /// `tpm_sas`, `sas` or `x509`.
    pub identity: String,
    /// Zero-touch provisioning through DPS, when the plan asks for it.
    pub dps: Option<DpsConfig>,
    /// The Plug and Play model id announced at connect.
    pub model_id: Option<String>,
    /// The hub's MQTT/TLS port.
    pub port: u16,
}

impl CloudSettings {
    /// Reads the settings through `var` (the process environment in production); no variable
    /// means no cloud configuration.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, CloudSettingsError> {
        let variable = testudo_plan::env::CLOUD;
        let Some(text) = var(variable) else {
            return Ok(Self::unconfigured());
        };
        let config: CloudConfig = testudo_plan::env::from_value(&text)
            .map_err(|source| CloudSettingsError { variable, source })?;
        Ok(Self::from_config(config))
    }

    /// The settings of a plan's cloud section.
    pub fn from_config(config: CloudConfig) -> Self {
        Self {
            hub: config.hub,
            device_id: config.device_id,
            identity: config.identity,
            dps: config.dps,
            model_id: config.model_id,
            port: config.mqtt_port,
        }
    }

    /// No cloud configuration at all (the agent serves its schemes and stays offline).
    pub fn unconfigured() -> Self {
        Self {
            hub: String::new(),
            device_id: String::new(),
            identity: String::new(),
            dps: None,
            model_id: None,
            port: 8883,
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, CloudSettingsError> {
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
            "dps_scope": self.dps.as_ref().map(|dps| dps.scope.as_str()),
        })
        .to_string();
        text.push('\n');
        text.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(value: &str) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| (name == testudo_plan::env::CLOUD).then(|| value.to_owned())
    }

    #[test]
    fn reads_the_cloud_section_and_defaults_the_port() {
        let settings = CloudSettings::from_vars(vars(
            r#"{"hub":"hub.example","device_id":"gw-1","identity":"sas"}"#,
        ))
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
    fn missing_values_are_named_and_bad_sections_refused() {
        let settings = CloudSettings::from_vars(|_| None).expect("absent is valid");
        assert_eq!(
            settings.missing(),
            Some("the plan names no hub (cloud.hub)")
        );
        let error = CloudSettings::from_vars(vars(r#"{"hub":"h","mqtt_port":"x"}"#))
            .expect_err("a port must be a number");
        assert_eq!(error.to_string(), "TESTUDO_CLOUD is not a cloud section");
    }
}
