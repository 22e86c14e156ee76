//! Where the Device Provisioning Service assigned this device, kept in the agent's storage
//! (`provisioning.json`, [`testudo_plan::layout::agent_storage::PROVISIONING`]) so the next
//! boot connects straight to the assigned hub: DPS is asked again only when nothing is
//! stored, when the stored assignment was made for another ID scope or registration id (the
//! config changed), or when the hub refuses the identity (the device was deleted or moved):
//! then the assignment is forgotten and the device registers again.
//!
//! The file is written with the storage scheme's atomic replacement: a power cut leaves the
//! old assignment or the new one, never half of one. Its content is untrusted on reading
//! (the data partition may be damaged): anything but the exact shape, or more than
//! [`MAX_BYTES`], counts as no assignment and is reported.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use testudo_plan::layout::agent_storage::PROVISIONING;
use testudo_plan::{DpsAttestation, DpsConfig as PlanDps};

use crate::dial::Dialer;
use crate::dps::{self, Assignment};
use crate::dps_tpm_route;
use crate::error::AgentError;
use crate::sas::SasSigner;
use crate::spool::StorageFiles;
use crate::tls::TlsSettings;
use crate::tpm::DEFAULT_KEY_HANDLE;
use crate::tpm_route::TpmRoute;

/// How long one registration may take before it is abandoned (and retried with backoff).
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest assignment file read.
pub const MAX_BYTES: usize = 4096;

/// An assignment as stored, with what it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredAssignment {
    /// The DPS ID scope the device registered with.
    pub id_scope: String,
    /// The registration id it registered as.
    pub registration_id: String,
    /// The hub DPS assigned.
    pub assigned_hub: String,
    /// The device id in that hub.
    pub device_id: String,
}

impl StoredAssignment {
    /// The assignment DPS made for `registration_id` in `id_scope`.
    pub fn new(id_scope: &str, registration_id: &str, assignment: &Assignment) -> Self {
        StoredAssignment {
            id_scope: id_scope.to_owned(),
            registration_id: registration_id.to_owned(),
            assigned_hub: assignment.assigned_hub.clone(),
            device_id: assignment.device_id.clone(),
        }
    }

    /// Whether it was made for this scope and registration id.
    pub fn applies_to(&self, id_scope: &str, registration_id: &str) -> bool {
        self.id_scope == id_scope && self.registration_id == registration_id
    }
}

/// Why the stored assignment cannot be used or kept.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// The storage scheme refused a read or write.
    #[error("{step} {PROVISIONING}")]
    Storage {
        /// `reading` or `writing`.
        step: &'static str,
        /// What the storage said.
        #[source]
        source: AgentError,
    },
    /// The file is larger than [`MAX_BYTES`].
    #[error("{PROVISIONING} is {size} bytes, more than {MAX_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// The file is not an assignment.
    #[error("{PROVISIONING} is not an assignment")]
    Parse {
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// DPS registration failed (refused, unreachable, garbage answered).
    #[error("registering {registration_id} with DPS at {endpoint}")]
    Register {
        /// Who registered.
        registration_id: String,
        /// The DPS endpoint.
        endpoint: String,
        /// Why (boxed: the agent's error is large and this one travels on every load).
        #[source]
        source: Box<AgentError>,
    },
    /// The attestation needs something the device does not have.
    #[error("DPS attestation {attestation:?} needs {missing}")]
    Missing {
        /// The plan's attestation.
        attestation: DpsAttestation,
        /// What is missing.
        missing: &'static str,
    },
    /// An assignment could not be written as JSON.
    #[error("the assignment cannot be written as JSON")]
    Serialize {
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// Parses a stored assignment: `null` (forgotten) is none.
pub fn parse(bytes: &[u8]) -> Result<Option<StoredAssignment>, ProvisioningError> {
    if bytes.len() > MAX_BYTES {
        return Err(ProvisioningError::TooLarge { size: bytes.len() });
    }
    serde_json::from_slice(bytes).map_err(|source| ProvisioningError::Parse { source })
}

/// The stored assignment, if there is one.
pub fn load(files: &StorageFiles) -> Result<Option<StoredAssignment>, ProvisioningError> {
    match files.read_file(PROVISIONING) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => parse(&bytes),
        Err(source) => Err(ProvisioningError::Storage {
            step: "reading",
            source,
        }),
    }
}

/// Stores `assignment` (or, with `None`, forgets it) atomically.
pub fn store(
    files: &StorageFiles,
    assignment: Option<&StoredAssignment>,
) -> Result<(), ProvisioningError> {
    let mut bytes = serde_json::to_vec_pretty(&assignment)
        .map_err(|source| ProvisioningError::Serialize { source })?;
    bytes.push(b'\n');
    files
        .replace_atomically(PROVISIONING, &bytes)
        .map_err(|source| ProvisioningError::Storage {
            step: "writing",
            source,
        })
}

/// What a registration uses: the plan's DPS section and how to reach and convince it.
pub struct Registration<'a> {
    /// The plan's `cloud.dps`.
    pub dps: &'a PlanDps,
    /// The registration id (the plan's `cloud.device_id`).
    pub registration_id: &'a str,
    /// Where the connection is made (the `net` route).
    pub dialer: Arc<dyn Dialer>,
    /// Trust anchors, and the client certificate for X.509 attestation.
    pub tls: TlsSettings,
    /// The SAS signer for symmetric-key attestation (a software key or the TPM's).
    pub signer: Option<Arc<dyn SasSigner>>,
    /// The TPM (the `tpm` route), for TPM attestation: DPS's key is imported at
    /// [`DEFAULT_KEY_HANDLE`], where the `tpm_sas` identity signs with it.
    pub tpm: Option<Arc<TpmRoute>>,
    /// Told each step of a TPM attestation as it is reached.
    pub progress: Option<dps_tpm_route::Progress>,
}

/// The device's assignment: the stored one when it was made for this scope and registration
/// id, else a new registration (stored before it is returned). The `bool` says whether DPS
/// was asked.
pub async fn assignment(
    files: &StorageFiles,
    registration: Registration<'_>,
) -> Result<(StoredAssignment, bool), ProvisioningError> {
    let dps = registration.dps;
    if let Some(stored) = load(files)? {
        if stored.applies_to(&dps.scope, registration.registration_id) {
            return Ok((stored, false));
        }
    }
    let assignment = register(&registration).await?;
    let stored = StoredAssignment::new(&dps.scope, registration.registration_id, &assignment);
    store(files, Some(&stored))?;
    Ok((stored, true))
}

/// Registers with DPS as the plan's attestation says.
async fn register(registration: &Registration<'_>) -> Result<Assignment, ProvisioningError> {
    let dps = registration.dps;
    let (port, signer) = match dps.attestation {
        DpsAttestation::SymmetricKey => {
            let Some(signer) = registration.signer.clone() else {
                return Err(ProvisioningError::Missing {
                    attestation: dps.attestation,
                    missing: "a symmetric key (the TPM's, or `device-key` in storage)",
                });
            };
            (dps.mqtt_port, Some(signer))
        }
        DpsAttestation::X509 => {
            if registration.tls.client_identity.is_none() {
                return Err(ProvisioningError::Missing {
                    attestation: dps.attestation,
                    missing: "a device certificate",
                });
            }
            (dps.mqtt_port, None)
        }
        DpsAttestation::Tpm => {
            let Some(tpm) = registration.tpm.clone() else {
                return Err(ProvisioningError::Missing {
                    attestation: dps.attestation,
                    missing: "a `tpm` route",
                });
            };
            let config = dps_tpm_route::TpmRouteDpsConfig {
                host: dps.endpoint.clone(),
                port: dps.https_port,
                id_scope: dps.scope.clone(),
                registration_id: registration.registration_id.to_owned(),
                key_handle: DEFAULT_KEY_HANDLE,
                tls: registration.tls.clone(),
                dialer: registration.dialer.clone(),
                tpm,
                timeout: REGISTRATION_TIMEOUT,
                progress: registration.progress.clone(),
            };
            return dps_tpm_route::register(&config).await.map_err(|source| {
                ProvisioningError::Register {
                    registration_id: registration.registration_id.to_owned(),
                    endpoint: format!("{}:{}", dps.endpoint, dps.https_port),
                    source: Box::new(source),
                }
            });
        }
    };
    let config = dps::DpsConfig {
        host: dps.endpoint.clone(),
        port,
        id_scope: dps.scope.clone(),
        registration_id: registration.registration_id.to_owned(),
        tls: registration.tls.clone(),
        signer,
        timeout: REGISTRATION_TIMEOUT,
        dialer: Some(registration.dialer.clone()),
    };
    dps::register(&config)
        .await
        .map_err(|source| ProvisioningError::Register {
            registration_id: registration.registration_id.to_owned(),
            endpoint: format!("{}:{port}", dps.endpoint),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment() -> StoredAssignment {
        StoredAssignment::new(
            "0ne00000001",
            "gateway-0001",
            &Assignment {
                assigned_hub: "hub.testudo.dev".into(),
                device_id: "gateway-0001".into(),
            },
        )
    }

    #[test]
    fn round_trips_and_null_is_forgotten() {
        let bytes = serde_json::to_vec(&Some(assignment())).unwrap();
        assert_eq!(parse(&bytes).unwrap(), Some(assignment()));
        assert_eq!(parse(b"null").unwrap(), None);
        assert!(assignment().applies_to("0ne00000001", "gateway-0001"));
        assert!(!assignment().applies_to("0ne00000002", "gateway-0001"));
    }

    #[test]
    fn damaged_or_hostile_files_are_refused() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"id_scope\":1}",
            b"{\"id_scope\":\"s\",\"registration_id\":\"r\",\"assigned_hub\":\"h\",\"device_id\":\"d\",\"extra\":1}",
            b"\x00\x00\x00",
        ] {
            assert!(
                matches!(parse(bad), Err(ProvisioningError::Parse { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse(&vec![b' '; MAX_BYTES + 1]),
            Err(ProvisioningError::TooLarge { .. })
        ));
    }
}
