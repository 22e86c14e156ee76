//! What a verified deployment must fit on the device, as pure functions init calls: the
//! system, the slot, the serial and the slot's maximum routes ([`check_against_device`]), and
//! the fetched module's size and hash ([`App::check_module`], [`App::check_digest`] with a
//! [`ModuleHasher`] for a module read in pieces).

use sha2::{Digest, Sha256};
use testudo_plan::AppSlot;

use crate::document::{Action, App};
use crate::error::{DeploymentError, Refusal};
use crate::jws::VerifiedDeployment;

/// Checks a verified deployment against the device's state, and reports every reason it
/// does not fit ([`DeploymentError::Refused`]), in this order:
/// - its `compatible` is not `device_compatible` (the plan's `compatible`): another system;
/// - `slot` is `None`: the plan has no app slot of the document's name (the caller passes
///   `plan.app_slots.get(slot)`);
/// - its serial is not greater than `installed_serial`, the serial last installed in the slot
///   (a deployment or a removal; `None` when the slot never had one): a replay;
/// - for a deployment, each route of `uses` beyond the slot's `max_uses`
///   ([`AppSlot::admits`]), by local name.
pub fn check_against_device(
    verified: &VerifiedDeployment,
    slot: Option<&AppSlot>,
    device_compatible: &str,
    installed_serial: Option<u64>,
) -> Result<(), DeploymentError> {
    let deployment = verified.deployment();
    let mut reasons = Vec::new();
    if deployment.compatible != device_compatible {
        reasons.push(Refusal::OtherSystem {
            document: deployment.compatible.clone(),
            device: device_compatible.to_owned(),
        });
    }
    if slot.is_none() {
        reasons.push(Refusal::NoSuchSlot {
            slot: deployment.slot.clone(),
        });
    }
    if let Some(installed) = installed_serial.filter(|installed| deployment.serial <= *installed) {
        reasons.push(Refusal::Replay {
            serial: deployment.serial,
            installed,
        });
    }
    if let (Some(slot), Action::Deploy(release)) = (slot, &deployment.action) {
        if let Err(violations) = slot.admits(&release.uses) {
            reasons.extend(
                violations
                    .into_iter()
                    .map(|(local, reason)| Refusal::Route { local, reason }),
            );
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(DeploymentError::Refused {
            slot: deployment.slot.clone(),
            serial: deployment.serial,
            remove: deployment.is_removal(),
            reasons,
        })
    }
}

/// The size and sha256 of a module, as [`ModuleHasher`] computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleDigest {
    /// Bytes hashed.
    pub size: u64,
    /// Their sha256.
    pub sha256: [u8; 32],
}

/// Hashes a module as it is read or fetched, in pieces of any size: [`ModuleHasher::update`]
/// or `std::io::Write` (e.g. `std::io::copy` from the download), then
/// [`ModuleHasher::finish`].
#[derive(Debug, Clone, Default)]
pub struct ModuleHasher {
    hasher: Sha256,
    size: u64,
}

impl ModuleHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> ModuleHasher {
        ModuleHasher::default()
    }

    /// Adds the next bytes of the module.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size = self.size.saturating_add(bytes.len() as u64);
    }

    /// How many bytes it has seen (a fetcher stops reading beyond `app.size`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The size and hash of everything added.
    pub fn finish(self) -> ModuleDigest {
        ModuleDigest {
            size: self.size,
            sha256: self.hasher.finalize().into(),
        }
    }
}

impl std::io::Write for ModuleHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl App {
    /// Checks that `module` is this app's module: its size, then its sha256.
    pub fn check_module(&self, module: &[u8]) -> Result<(), DeploymentError> {
        let mut hasher = ModuleHasher::new();
        hasher.update(module);
        self.check_digest(&hasher.finish())
    }

    /// Checks a module hashed in pieces ([`ModuleHasher`]): its size, then its sha256.
    pub fn check_digest(&self, digest: &ModuleDigest) -> Result<(), DeploymentError> {
        if digest.size != self.size {
            return Err(DeploymentError::ModuleSize {
                app: self.name.clone(),
                expected: self.size,
                found: digest.size,
            });
        }
        let found = hex::encode(digest.sha256);
        if found != self.sha256 {
            return Err(DeploymentError::ModuleHash {
                app: self.name.clone(),
                expected: self.sha256.clone(),
                found,
            });
        }
        Ok(())
    }
}
