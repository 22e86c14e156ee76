//! Operating on a state directory from another process (the CLI): through the running
//! emulator's HTTPS service API when `endpoint.json` names a live one, so its in-memory state
//! stays the single writer; otherwise directly on the files.

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::HubError;
use crate::hub::Hub;
use crate::registry::{HubConfig, SERVICE_POLICY};
use crate::store::Store;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    host: String,
    https_port: u16,
}

/// The running emulator's own service API, through the service client operators use
/// ([`testudo_hub_service::ServiceClient`]), connected to 127.0.0.1 whatever the hub's name.
#[derive(Debug)]
pub struct ServiceClient {
    hub: testudo_hub_service::ServiceConnectionString,
    client: testudo_hub_service::ServiceClient,
}

impl ServiceClient {
    /// A client for the emulator running on `dir`, if one is running there.
    pub fn for_running(dir: &Path) -> Result<Option<ServiceClient>, HubError> {
        let store = Store::open(dir)?;
        let Some(endpoint) = store.read_json::<Endpoint>(&store.path("endpoint.json"))? else {
            return Ok(None);
        };
        let Some(config) = store.read_json::<HubConfig>(&store.path("hub.json"))? else {
            return Ok(None);
        };
        let ca_path = store.path("ca.pem");
        let ca_pem = std::fs::read_to_string(&ca_path).map_err(|source| HubError::ReadState {
            path: ca_path,
            source,
        })?;
        // A stale endpoint file (emulator killed) means: not running.
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], endpoint.https_port));
        if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
            return Ok(None);
        }
        let hub = testudo_hub_service::ServiceConnectionString {
            host: endpoint.host,
            port: endpoint.https_port,
            key_name: SERVICE_POLICY.to_owned(),
            key: config.service_key,
        };
        let client = testudo_hub_service::ServiceClient::new(hub.clone(), &ca_pem)
            .map_err(|error| HubError::ServiceRequest {
                request: "set-up".to_owned(),
                source: std::io::Error::other(error),
            })?
            .connect_to(address);
        Ok(Some(ServiceClient { hub, client }))
    }

    /// Sends one request; returns the status and the JSON body (`null` if empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), HubError> {
        self.request_if_match(method, path, body, None)
    }

    /// Sends one request with an optional `If-Match` precondition.
    pub fn request_if_match(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(u16, Value), HubError> {
        use testudo_hub_service::ServiceError;
        self.client
            .request(method, path, body, if_match)
            .map_err(|error| match error {
                ServiceError::Status {
                    request,
                    status,
                    message,
                } => HubError::ServiceStatus {
                    request,
                    status,
                    body: message,
                },
                ServiceError::Transport {
                    request, source, ..
                } => HubError::ServiceRequest { request, source },
                other => HubError::ServiceRequest {
                    request: format!("{method} {path}"),
                    source: std::io::Error::other(other),
                },
            })
    }
}

fn open_offline(dir: &Path) -> Result<std::sync::Arc<Hub>, HubError> {
    let store = Store::open(dir)?;
    let host = store
        .read_json::<HubConfig>(&store.path("hub.json"))?
        .map_or_else(|| "localhost".to_owned(), |config| config.host_name);
    crate::tls::load_or_create(&store, &host)?;
    Hub::open(store, &host)
}

/// Registers a SAS device; returns its connection string.
pub fn add_device(dir: &Path, id: &str) -> Result<String, HubError> {
    crate::registry::validate_device_id(id)?;
    if let Some(client) = ServiceClient::for_running(dir)? {
        let path = format!("/devices/{}", crate::sas::url_encode(id));
        let (_, identity) = client.request("PUT", &path, Some(&json!({"deviceId": id})))?;
        let key = identity["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap_or_default();
        return Ok(format!(
            "HostName={};DeviceId={id};SharedAccessKey={key}",
            client.hub.host
        ));
    }
    let hub = open_offline(dir)?;
    hub.add_device(id, None)?;
    hub.flush();
    hub.device_connection_string(id)
}

/// The service connection string of the hub in `dir` (port from the running emulator, or
/// 443 when none runs).
pub fn service_connection_string(dir: &Path) -> Result<String, HubError> {
    if let Some(client) = ServiceClient::for_running(dir)? {
        return Ok(format!(
            "HostName={};SharedAccessKeyName={SERVICE_POLICY};SharedAccessKey={}",
            client.hub.host_name(),
            client.hub.key
        ));
    }
    let hub = open_offline(dir)?;
    Ok(hub.service_connection_string(443))
}

/// The service view of a twin, after applying `desired` as a patch if given.
pub fn twin(dir: &Path, id: &str, desired: Option<&Value>) -> Result<Value, HubError> {
    if let Some(client) = ServiceClient::for_running(dir)? {
        let path = format!("/twins/{}", crate::sas::url_encode(id));
        let (_, twin) = match desired {
            Some(patch) => client.request(
                "PATCH",
                &path,
                Some(&json!({"properties": {"desired": patch}})),
            )?,
            None => client.request("GET", &path, None)?,
        };
        return Ok(twin);
    }
    let hub = open_offline(dir)?;
    if let Some(patch) = desired {
        hub.patch_desired(id, patch)?;
        hub.flush();
    }
    hub.twin(id)
}

/// A DPS enrollment to add from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewEnrollment {
    /// TPM attestation: the EK's `TPM2B_PUBLIC`, as `testudo vm tpm-ek` prints it (base64).
    Tpm {
        /// Base64 of the `TPM2B_PUBLIC`.
        endorsement_key: String,
    },
    /// A symmetric key (a fresh one when `None`); `group` for an enrollment group, whose
    /// devices derive their keys from it.
    SymmetricKey {
        /// Base64 key.
        key: Option<String>,
        /// An enrollment group rather than one device.
        group: bool,
    },
    /// X.509: the device certificate's thumbprint (SHA-256, hex).
    X509 {
        /// Hex thumbprint.
        thumbprint: String,
    },
    /// An X.509 enrollment group: every device whose certificate chain leads to this CA
    /// registers under its certificate's common name.
    X509Ca {
        /// The CA certificate (PEM).
        ca_pem: String,
    },
}

impl NewEnrollment {
    /// Whether this is an enrollment group, and its DPS service API `attestation` object.
    fn request(&self) -> (bool, Value) {
        match self {
            NewEnrollment::Tpm { endorsement_key } => (
                false,
                json!({"type": "tpm", "tpm": {"endorsementKey": endorsement_key}}),
            ),
            NewEnrollment::SymmetricKey { key, group } => (
                *group,
                json!({"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}),
            ),
            NewEnrollment::X509 { thumbprint } => (
                false,
                json!({"type": "x509", "x509": {"thumbprint": thumbprint}}),
            ),
            NewEnrollment::X509Ca { ca_pem } => (
                true,
                json!({"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": ca_pem}}}}),
            ),
        }
    }
}

/// The SHA-256 thumbprint (uppercase hex) of the first certificate in `pem`.
pub fn certificate_thumbprint(pem: &[u8]) -> Result<String, HubError> {
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .and_then(Result::ok)
        .ok_or(HubError::InvalidPem {
            path: std::path::PathBuf::from("<certificate>"),
        })?;
    let [_, sha256] = crate::tls::thumbprints(&der);
    Ok(sha256)
}

/// Adds (or replaces) the DPS enrollment `id`; returns it as the DPS service API shows it
/// (with the key, when one was generated).
pub fn add_enrollment(dir: &Path, id: &str, enrollment: &NewEnrollment) -> Result<Value, HubError> {
    let (group, attestation) = enrollment.request();
    if let Some(client) = ServiceClient::for_running(dir)? {
        let collection = if group {
            "enrollmentGroups"
        } else {
            "enrollments"
        };
        let path = format!("/{collection}/{}", crate::sas::url_encode(id));
        let (_, answer) =
            client.request("PUT", &path, Some(&json!({"attestation": attestation})))?;
        return Ok(answer);
    }
    let hub = open_offline(dir)?;
    let added = hub.put_enrollment(id, group, &attestation)?;
    hub.flush();
    Ok(added)
}

/// Every DPS enrollment of the hub in `dir`.
pub fn enrollments(dir: &Path) -> Result<Value, HubError> {
    if let Some(client) = ServiceClient::for_running(dir)? {
        let (_, answer) = client.request("GET", "/enrollments", None)?;
        return Ok(answer);
    }
    Ok(open_offline(dir)?.enrollments())
}

/// Removes the DPS enrollment or enrollment group `id`; whether there was one.
pub fn remove_enrollment(dir: &Path, id: &str) -> Result<bool, HubError> {
    if let Some(client) = ServiceClient::for_running(dir)? {
        let path = format!("/enrollments/{}", crate::sas::url_encode(id));
        return match client.request("DELETE", &path, None) {
            Ok(_) => Ok(true),
            Err(HubError::ServiceStatus { status: 404, .. }) => Ok(false),
            Err(error) => Err(error),
        };
    }
    let hub = open_offline(dir)?;
    let removed = hub.remove_enrollment(id);
    hub.flush();
    Ok(removed)
}
