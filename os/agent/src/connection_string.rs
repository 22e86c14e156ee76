//! Device connection strings as the Azure portal and `testudo hub device add` print them:
//! `HostName=h;DeviceId=d;SharedAccessKey=k` (optionally `ModuleId`, `GatewayHostName`, or
//! `x509=true` instead of a key).

use std::fmt;

use crate::error::{AgentError, Result};

/// How the device proves its identity.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A base64 shared access key, as in the connection string.
    SharedAccessKey(String),
    /// The device authenticates with an X.509 client certificate (`x509=true`).
    X509,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never print key material.
            Self::SharedAccessKey(_) => f.write_str("SharedAccessKey(<redacted>)"),
            Self::X509 => f.write_str("X509"),
        }
    }
}

/// A parsed device connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// Hub host name, e.g. `myhub.azure-devices.net`.
    pub host_name: String,
    /// Device id.
    pub device_id: String,
    /// Module id, for module identities.
    pub module_id: Option<String>,
    /// Gateway to dial instead of the hub (IoT Edge).
    pub gateway_host_name: Option<String>,
    /// Key or certificate.
    pub credential: Credential,
}

impl ConnectionString {
    /// Parses `Key=Value;...`. Keys are case-sensitive as in Azure's SDKs; duplicates and unknown
    /// keys are rejected so a typo never silently changes identity.
    pub fn parse(text: &str) -> Result<Self> {
        let fail = |reason: String| AgentError::ParseConnectionString { reason };
        let mut host_name = None;
        let mut device_id = None;
        let mut module_id = None;
        let mut gateway = None;
        let mut key = None;
        let mut x509 = false;
        for part in text.trim().split(';').filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| fail(format!("segment without '=' (key {:?})", first_word(part))))?;
            if value.is_empty() {
                return Err(fail(format!("{name} is empty")));
            }
            let slot = match name {
                "HostName" => &mut host_name,
                "DeviceId" => &mut device_id,
                "ModuleId" => &mut module_id,
                "GatewayHostName" => &mut gateway,
                "SharedAccessKey" => &mut key,
                "x509" => {
                    if !value.eq_ignore_ascii_case("true") {
                        return Err(fail(format!("x509 must be 'true', found {value:?}")));
                    }
                    x509 = true;
                    continue;
                }
                "SharedAccessKeyName" => return Err(fail(
                    "SharedAccessKeyName is a service (policy) connection string, not a device's"
                        .into(),
                )),
                other => return Err(fail(format!("unknown key {other:?}"))),
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(fail(format!("{name} appears twice")));
            }
        }
        let host_name = host_name.ok_or_else(|| fail("HostName is missing".into()))?;
        let device_id = device_id.ok_or_else(|| fail("DeviceId is missing".into()))?;
        let credential = match (key, x509) {
            (Some(key), false) => Credential::SharedAccessKey(key),
            (None, true) => Credential::X509,
            (Some(_), true) => {
                return Err(fail("both SharedAccessKey and x509=true given".into()));
            }
            (None, false) => {
                return Err(fail("neither SharedAccessKey nor x509=true given".into()));
            }
        };
        Ok(Self {
            host_name,
            device_id,
            module_id,
            gateway_host_name: gateway,
            credential,
        })
    }

    /// The MQTT client id: `{deviceId}` or `{deviceId}/{moduleId}`.
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(module) => format!("{}/{module}", self.device_id),
            None => self.device_id.clone(),
        }
    }

    /// The SAS resource URI: `{host}/devices/{deviceId}[/modules/{moduleId}]`.
    pub fn resource_uri(&self) -> String {
        match &self.module_id {
            Some(module) => format!(
                "{}/devices/{}/modules/{module}",
                self.host_name, self.device_id
            ),
            None => format!("{}/devices/{}", self.host_name, self.device_id),
        }
    }
}

fn first_word(part: &str) -> String {
    part.chars().take(24).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_portal_connection_string() {
        let cs = ConnectionString::parse(
            "HostName=myhub.azure-devices.net;DeviceId=gw-01;SharedAccessKey=c2VjcmV0",
        )
        .unwrap();
        assert_eq!(cs.host_name, "myhub.azure-devices.net");
        assert_eq!(cs.device_id, "gw-01");
        assert_eq!(
            cs.credential,
            Credential::SharedAccessKey("c2VjcmV0".into())
        );
        assert_eq!(cs.client_id(), "gw-01");
        assert_eq!(cs.resource_uri(), "myhub.azure-devices.net/devices/gw-01");
    }

    #[test]
    fn key_may_contain_equals_padding() {
        let cs = ConnectionString::parse("HostName=h;DeviceId=d;SharedAccessKey=YWJjZA==").unwrap();
        assert_eq!(
            cs.credential,
            Credential::SharedAccessKey("YWJjZA==".into())
        );
    }

    #[test]
    fn module_identity_and_x509() {
        let cs = ConnectionString::parse("HostName=h;DeviceId=d;ModuleId=m;x509=true").unwrap();
        assert_eq!(cs.client_id(), "d/m");
        assert_eq!(cs.resource_uri(), "h/devices/d/modules/m");
        assert_eq!(cs.credential, Credential::X509);
    }

    #[test]
    fn rejects_bad_strings_without_leaking_the_key() {
        for bad in [
            "",
            "HostName=h;SharedAccessKey=secretkey",
            "HostName=h;DeviceId=d",
            "HostName=h;DeviceId=d;DeviceId=e;SharedAccessKey=k",
            "HostName=h;DeviceId=d;Sharedaccesskey=secretkey",
            "HostName=h;DeviceId=d;SharedAccessKey=secretkey;x509=true",
            "HostName=h;DeviceId=;SharedAccessKey=secretkey",
            "HostName=h;DeviceId=d;SharedAccessKeyName=owner;SharedAccessKey=secretkey",
            "garbage",
        ] {
            let err = ConnectionString::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("secretkey"), "{err}");
        }
    }

    #[test]
    fn debug_redacts_the_key() {
        let cs =
            ConnectionString::parse("HostName=h;DeviceId=d;SharedAccessKey=secretkey").unwrap();
        assert!(!format!("{cs:?}").contains("secretkey"));
    }
}
