//! Verifying a staged bundle and writing it into the other slot: two independent checks
//! before a byte of the slot is written — the manifest's signature (ADU's chain to the
//! image's root keys) with the file's size and sha256 it signs, then the bundle's own CMS
//! signature and verity tree against the image's RAUC keyring — and the bundle's version
//! against the manifest's installed criteria. The install itself is the updater library's
//! ([`testudo_updater::install`]): the slot is marked bad first and made the next boot, on
//! trial, only once written and read back.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use testudo_os_update::result::FailedStep;
use testudo_os_update::signature::{self, RootKeys};
use testudo_updater::bootloader::{BootState, Bootloader};
use testudo_updater::install::{self, InstallOptions, Step};
use testudo_updater::{bundle, Keyring, SystemConf, UpdaterError};

use crate::workflow::{lock_grub, Failure, SharedGrub};

/// Bytes hashed per read of the staged file.
const HASH_CHUNK: usize = 1024 * 1024;

/// Everything the install of one workflow needs, taken from [`crate::Updates`] so the long
/// work runs without its lock.
#[derive(Debug)]
pub struct InstallJob {
    /// The workflow.
    pub workflow: String,
    /// Its `updateManifest`.
    pub manifest: String,
    /// Its signature.
    pub signature: String,
    /// The root keys' JWK set.
    pub root_keys: PathBuf,
    /// The staged bundle.
    pub staged: PathBuf,
    /// The device's RAUC configuration.
    pub conf: SystemConf,
    /// The running slot (bootname).
    pub booted: String,
    /// The slot to write (bootname).
    pub target: String,
    /// The boot-selection state.
    pub grub: SharedGrub,
}

impl InstallJob {
    /// Verifies and installs; `progress(done, total)` sees the hashing, then the writing.
    pub fn run(self, progress: &mut dyn FnMut(u64, u64)) -> Result<(), Failure> {
        let roots = std::fs::read(&self.root_keys)
            .map_err(|error| {
                Failure::new(
                    FailedStep::ManifestSignature,
                    format!("reading {}: {error}", self.root_keys.display()),
                )
            })
            .and_then(|bytes| {
                RootKeys::from_jwks(&bytes)
                    .map_err(|error| Failure::of(FailedStep::ManifestSignature, &error))
            })?;
        let verified = signature::verify(&self.manifest, &self.signature, &roots)
            .map_err(|error| Failure::of(FailedStep::ManifestSignature, &error))?;
        let step = verified
            .manifest
            .bundle_step()
            .map_err(|error| Failure::of(FailedStep::ManifestContent, &error))?;
        check_staged_file(
            &self.staged,
            step.file.size_in_bytes,
            &step.file.sha256,
            progress,
        )?;
        let bundle = self.open_bundle()?;
        let version = bundle.manifest.version.clone().unwrap_or_default();
        if version != step.installed_criteria {
            return Err(Failure::new(
                FailedStep::BundleContent,
                format!(
                    "the bundle's version is {version:?}; the manifest installs {:?}",
                    step.installed_criteria
                ),
            ));
        }
        let booted = self
            .conf
            .slot_by_bootname(&self.booted)
            .ok_or_else(|| {
                Failure::new(
                    FailedStep::Install,
                    format!("the booted slot {} is not in system.conf", self.booted),
                )
            })?
            .clone();
        let total = bundle.manifest.images.iter().map(|image| image.size).sum();
        let mut bootloader = LockedGrub(&self.grub);
        let mut written = 0u64;
        let mut observer = |_: usize, step: &Step| {
            if let Step::WriteChunk { len, .. } = step {
                written += *len as u64;
                progress(written, total);
            }
            ControlFlow::Continue(())
        };
        let report = install::install(
            &self.conf,
            &booted,
            &bundle,
            &mut bootloader,
            &InstallOptions::default(),
            &mut observer,
        )
        .map_err(|error| match error {
            UpdaterError::Incompatible { .. } => Failure::of(FailedStep::Incompatible, &error),
            UpdaterError::Downgrade { .. } => Failure::of(FailedStep::Downgrade, &error),
            other => Failure::of(FailedStep::Install, &other),
        })?;
        if report.bootname != self.target {
            return Err(Failure::new(
                FailedStep::Install,
                format!(
                    "wrote slot {} where {} was expected",
                    report.bootname, self.target
                ),
            ));
        }
        Ok(())
    }

    /// The bundle's CMS signature and payload (verity tree), against the image's keyring.
    fn open_bundle(&self) -> Result<bundle::VerifiedBundle, Failure> {
        let keyring_path = self.conf.keyring.clone().ok_or_else(|| {
            Failure::new(
                FailedStep::BundleSignature,
                "system.conf names no [keyring] path",
            )
        })?;
        let keyring = Keyring::load(&keyring_path, self.conf.check_purpose)
            .map_err(|error| Failure::of(FailedStep::BundleSignature, &error))?;
        bundle::open(&self.staged, &keyring).map_err(|error| match error {
            UpdaterError::VerifySignature { .. } | UpdaterError::LoadCrypto { .. } => {
                Failure::of(FailedStep::BundleSignature, &error)
            }
            other => Failure::of(FailedStep::BundleContent, &other),
        })
    }
}

/// The staged file is exactly `size` bytes with sha256 `expected`.
fn check_staged_file(
    path: &std::path::Path,
    size: u64,
    expected: &[u8; 32],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), Failure> {
    let failed = |error: std::io::Error| {
        Failure::new(
            FailedStep::Download,
            format!("reading the staged file {}: {error}", path.display()),
        )
    };
    let mut file = std::fs::File::open(path).map_err(failed)?;
    // The relay cannot sync what it writes: the staged bytes are made durable before they are
    // verified, so an install cut short finds the same verified bytes at the next boot.
    file.sync_all().map_err(failed)?;
    let staged = file.metadata().map_err(failed)?.len();
    if staged != size {
        return Err(Failure::new(
            FailedStep::FileHash,
            format!("{staged} bytes were staged; the signed manifest says {size}"),
        ));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(done, size);
    }
    if hasher.finalize().as_slice() != expected {
        return Err(Failure::new(
            FailedStep::FileHash,
            "the staged file's sha256 is not the one the signed manifest names",
        ));
    }
    Ok(())
}

/// The shared grubenv as a [`Bootloader`], locked for each call only.
struct LockedGrub<'g>(&'g SharedGrub);

impl Bootloader for LockedGrub<'_> {
    fn name(&self) -> &'static str {
        "grub"
    }

    fn primary(&mut self) -> testudo_updater::Result<Option<String>> {
        lock_grub(self.0).primary()
    }

    fn set_primary(&mut self, bootname: &str) -> testudo_updater::Result<()> {
        lock_grub(self.0).set_primary(bootname)
    }

    fn state(&mut self, bootname: &str) -> testudo_updater::Result<BootState> {
        lock_grub(self.0).state(bootname)
    }

    fn set_state(&mut self, bootname: &str, state: BootState) -> testudo_updater::Result<()> {
        lock_grub(self.0).set_state(bootname, state)
    }
}
