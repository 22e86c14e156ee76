//! The identity registry: hub identity (service policy, DPS scope and enrollments) and
//! device records (authentication, status, twin), as persisted in the state directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::HubError;
use crate::twin::Twin;

/// Name of the service policy the emulator grants (full rights, like IoT Hub's default).
pub const SERVICE_POLICY: &str = "iothubowner";

/// Hub identity, persisted as `hub.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubConfig {
    /// Host name the hub answers to (the TLS certificate's name).
    pub host_name: String,
    /// Key of the [`SERVICE_POLICY`] shared access policy (base64).
    pub service_key: String,
    /// DPS ID scope.
    pub id_scope: String,
    /// DPS individual enrollments: registration id -> symmetric key.
    #[serde(default)]
    pub individual_enrollments: BTreeMap<String, String>,
    /// DPS enrollment groups: group name -> group symmetric key (device keys are derived).
    #[serde(default)]
    pub enrollment_groups: BTreeMap<String, String>,
    /// DPS individual X.509 enrollments: registration id -> certificate thumbprint (hex).
    #[serde(default)]
    pub x509_enrollments: BTreeMap<String, String>,
    /// DPS individual TPM enrollments: registration id -> endorsement key (base64
    /// `TPM2B_PUBLIC`, as the device sends it).
    #[serde(default)]
    pub tpm_enrollments: BTreeMap<String, String>,
    /// DPS X.509 enrollment groups: group id -> signing CA certificate (PEM). Devices whose
    /// chain leads to it register under their certificate's common name; these CAs are also
    /// the hub's verified CAs for the devices so provisioned.
    #[serde(default)]
    pub x509_enrollment_groups: BTreeMap<String, String>,
}

/// How a device authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum DeviceAuth {
    /// SAS tokens signed with either symmetric key.
    #[serde(rename = "sas", rename_all = "camelCase")]
    Sas {
        /// Primary key (base64).
        primary_key: String,
        /// Secondary key (base64).
        secondary_key: String,
    },
    /// A self-signed X.509 client certificate whose SHA-1 or SHA-256 thumbprint is registered.
    #[serde(rename = "selfSigned", rename_all = "camelCase")]
    SelfSigned {
        /// Primary thumbprint (hex).
        primary_thumbprint: String,
        /// Secondary thumbprint (hex), may be empty.
        secondary_thumbprint: String,
    },
    /// An X.509 certificate chain leading to a verified CA, whose common name is the device id.
    #[serde(rename = "certificateAuthority")]
    CertificateAuthority,
}

/// One registered device, persisted as `devices/{id}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    /// Device id.
    pub device_id: String,
    /// Generation id (changes when a device is deleted and re-created).
    pub generation_id: String,
    /// Incremented on every registry change; the device etag is derived from it.
    pub revision: u64,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Authentication mechanism.
    pub authentication: DeviceAuth,
    /// The device twin.
    pub twin: Twin,
}

impl DeviceRecord {
    /// A new enabled device with the given authentication.
    pub fn new(device_id: &str, authentication: DeviceAuth) -> Self {
        DeviceRecord {
            device_id: device_id.to_owned(),
            generation_id: format!("{:016x}", rand::random::<u64>()),
            revision: 1,
            status: "enabled".into(),
            authentication,
            twin: Twin::default(),
        }
    }

    /// The device etag (base64 of the revision, quoted as IoT Hub returns it).
    pub fn etag(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.revision.to_string())
    }

    fn auth_json(&self) -> Value {
        match &self.authentication {
            DeviceAuth::Sas {
                primary_key,
                secondary_key,
            } => json!({
                "type": "sas",
                "symmetricKey": {"primaryKey": primary_key, "secondaryKey": secondary_key},
                "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
            }),
            DeviceAuth::SelfSigned {
                primary_thumbprint,
                secondary_thumbprint,
            } => json!({
                "type": "selfSigned",
                "symmetricKey": {"primaryKey": null, "secondaryKey": null},
                "x509Thumbprint": {
                    "primaryThumbprint": primary_thumbprint,
                    "secondaryThumbprint": if secondary_thumbprint.is_empty() { Value::Null } else { json!(secondary_thumbprint) },
                },
            }),
            DeviceAuth::CertificateAuthority => json!({
                "type": "certificateAuthority",
                "symmetricKey": {"primaryKey": null, "secondaryKey": null},
                "x509Thumbprint": {"primaryThumbprint": null, "secondaryThumbprint": null},
            }),
        }
    }

    /// The registry identity as the service API returns it.
    pub fn identity_json(&self, connected: bool) -> Value {
        json!({
            "deviceId": self.device_id,
            "generationId": self.generation_id,
            "etag": self.etag(),
            "connectionState": if connected { "Connected" } else { "Disconnected" },
            "status": self.status,
            "statusReason": null,
            "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
            "statusUpdatedTime": "0001-01-01T00:00:00Z",
            "lastActivityTime": "0001-01-01T00:00:00Z",
            "cloudToDeviceMessageCount": 0,
            "authentication": self.auth_json(),
            "capabilities": {"iotEdge": false},
        })
    }

    /// The twin as the service API returns it.
    pub fn twin_json(&self, connected: bool) -> Value {
        let auth_type = match self.authentication {
            DeviceAuth::Sas { .. } => "sas",
            DeviceAuth::SelfSigned { .. } => "selfSigned",
            DeviceAuth::CertificateAuthority => "certificateAuthority",
        };
        json!({
            "deviceId": self.device_id,
            "etag": self.twin.etag(),
            "deviceEtag": self.etag(),
            "status": self.status,
            "statusUpdateTime": "0001-01-01T00:00:00Z",
            "connectionState": if connected { "Connected" } else { "Disconnected" },
            "lastActivityTime": "0001-01-01T00:00:00Z",
            "cloudToDeviceMessageCount": 0,
            "authenticationType": auth_type,
            "x509Thumbprint": self.auth_json()["x509Thumbprint"].clone(),
            "modelId": "",
            "version": self.twin.version,
            "tags": self.twin.tags,
            "properties": {
                "desired": self.twin.desired.service_view(),
                "reported": self.twin.reported.service_view(),
            },
            "capabilities": {"iotEdge": false},
        })
    }
}

/// Checks a device (or DPS registration) id: 1-128 characters that are safe both for
/// IoT Hub and as a file name.
pub fn validate_device_id(id: &str) -> Result<(), HubError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._:@=+,!()'".contains(c);
    if id.is_empty() || id.len() > 128 || id == "." || id == ".." || !id.chars().all(allowed) {
        return Err(HubError::InvalidDeviceId { id: id.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_checked() {
        for good in ["dev1", "a.b-c_d:e@f", &"x".repeat(128)] {
            assert!(validate_device_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(129), "a#b"] {
            assert!(validate_device_id(bad).is_err(), "{bad}");
        }
    }
}
