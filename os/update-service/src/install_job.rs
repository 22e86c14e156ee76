//! Verifying a staged bundle and writing it into the other slot: two independent checks
//! before a byte of the slot is written — the manifest's signature (ADU's chain to the
//! image's root keys) with the file's size and sha256 it signs, and the bundle's own CMS
//! signature and verity tree against the image's RAUC keyring, both computed in one read of
//! the staged file — and the bundle's version against the manifest's installed criteria.
//! The install itself is the updater library's ([`testudo_updater::install`]): the slot is
//! marked bad first and made the next boot, on trial, only once written and read back.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use testudo_os_update::result::FailedStep;
use testudo_os_update::signature::{self, RootKeys};
use testudo_updater::bootloader::{BootState, Bootloader};
use testudo_updater::install::{self, InstallOptions, Step};
use testudo_updater::system_conf::ProgramsPolicy;
use testudo_updater::{bundle, Keyring, SystemConf, UpdaterError};

use crate::workflow::{lock_grub, Failure, SharedGrub};

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
    /// The file id of the delta bundle staged instead of the full one, if it is one (a
    /// related file of the bundle step's file; its size and sha256 are checked instead).
    pub delta: Option<String>,
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
    /// Verifies and installs; `progress(done, total)` sees the verification's read, then the
    /// writing.
    pub fn run(self, progress: &mut dyn FnMut(u64, u64)) -> Result<(), Failure> {
        self.verify(progress)?.install(progress)
    }

    /// The two checks: the manifest's signature with the staged file's size and sha256 it
    /// signs, and the bundle's CMS signature and verity tree, both from one read of the
    /// file; then the bundle's version against the manifest's installed criteria.
    /// `progress(done, total)` sees the read.
    pub fn verify(self, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifiedJob, Failure> {
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
        let (size, sha256) = match &self.delta {
            None => (step.file.size_in_bytes, step.file.sha256),
            Some(id) => {
                let delta = step.file.related_files.get(id).ok_or_else(|| {
                    Failure::new(
                        FailedStep::ManifestContent,
                        format!("the manifest has no related file {id}"),
                    )
                })?;
                (delta.size_in_bytes, delta.sha256)
            }
        };
        sync_staged_file(&self.staged, size)?;
        // One read of the staged file serves both checks: the bundle's own (CMS, verity) and
        // the manifest's sha256 of the whole file, computed from what that read shows.
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        let opened = self.open_bundle(&mut |bytes| {
            hasher.update(bytes);
            done += bytes.len() as u64;
            progress(done, size);
        });
        let bundle = match opened {
            Ok(bundle) if hasher.finalize().as_slice() == sha256 => bundle,
            Ok(_) => return Err(file_hash_differs()),
            // A bundle that does not verify is reported as the download it is when its bytes
            // are not the ones the manifest signs.
            Err(failure) => {
                if staged_sha256(&self.staged)? != sha256 {
                    return Err(file_hash_differs());
                }
                return Err(failure);
            }
        };
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
        Ok(VerifiedJob { job: self, bundle })
    }

    /// The bundle's CMS signature and payload (verity tree), against the image's keyring;
    /// `observe` sees every byte of the file in the same read.
    fn open_bundle(
        &self,
        observe: &mut dyn FnMut(&[u8]),
    ) -> Result<bundle::VerifiedBundle, Failure> {
        let keyring_path = self.conf.keyring.clone().ok_or_else(|| {
            Failure::new(
                FailedStep::BundleSignature,
                "system.conf names no [keyring] path",
            )
        })?;
        let keyring = Keyring::load(&keyring_path, self.conf.check_purpose)
            .map_err(|error| Failure::of(FailedStep::BundleSignature, &error))?;
        let decryptor = match &self.conf.encryption {
            Some(encryption) => Some(
                encryption
                    .load()
                    .map_err(|error| Failure::of(FailedStep::BundleSignature, &error))?,
            ),
            None => None,
        };
        let opened = bundle::open_observed(&self.staged, &keyring, decryptor.as_ref(), observe);
        opened.map_err(|error| match error {
            UpdaterError::VerifySignature { .. }
            | UpdaterError::LoadCrypto { .. }
            | UpdaterError::EncryptedBundle { .. }
            | UpdaterError::DecryptSignature { .. } => {
                Failure::of(FailedStep::BundleSignature, &error)
            }
            other => Failure::of(FailedStep::BundleContent, &other),
        })
    }
}

/// An [`InstallJob`] whose staged bundle passed both checks.
#[derive(Debug)]
pub struct VerifiedJob {
    job: InstallJob,
    bundle: bundle::VerifiedBundle,
}

impl VerifiedJob {
    /// The slot the bundle goes into (bootname).
    pub fn target(&self) -> &str {
        &self.job.target
    }

    /// Writes the bundle into the other slot and makes it the next boot, on trial;
    /// `progress(done, total)` sees the writing.
    pub fn install(self, progress: &mut dyn FnMut(u64, u64)) -> Result<(), Failure> {
        let VerifiedJob { job, bundle } = self;
        let booted = job
            .conf
            .slot_by_bootname(&job.booted)
            .ok_or_else(|| {
                Failure::new(
                    FailedStep::Install,
                    format!("the booted slot {} is not in system.conf", job.booted),
                )
            })?
            .clone();
        let total = bundle
            .manifest
            .images
            .iter()
            .map(|image| image.installed_size())
            .sum();
        let mut bootloader = LockedGrub(&job.grub);
        let mut written = 0u64;
        let mut observer = |_: usize, step: &Step| {
            if let Step::WriteChunk { len, .. } = step {
                written += *len as u64;
                progress(written, total);
            }
            ControlFlow::Continue(())
        };
        // This updater is itself a sandboxed component whose seccomp role allows no namespace
        // or mount, so it cannot start a bundle program's sandbox: programs are refused here
        // whatever system.conf says (decision 0097).
        let mut conf = job.conf.clone();
        conf.bundle_programs.policy = ProgramsPolicy::Refuse;
        let report = install::install(
            &conf,
            &booted,
            &bundle,
            &mut bootloader,
            &InstallOptions::default(),
            &mut observer,
        )
        .map_err(|error| match error {
            // An install-check hook decides compatibility in place of the manifest's compatible.
            UpdaterError::Incompatible { .. } | UpdaterError::BundleRejected { .. } => {
                Failure::of(FailedStep::Incompatible, &error)
            }
            UpdaterError::Downgrade { .. } => Failure::of(FailedStep::Downgrade, &error),
            // A delta for another image, or a patch that does not make the signed one: the
            // download is not what this device can use (the full bundle may be). A bundle
            // with programs to run, or a casync index: not installable by this updater.
            UpdaterError::DeltaBase { .. }
            | UpdaterError::DeltaResult { .. }
            | UpdaterError::ApplyPatch { .. }
            | UpdaterError::BundlePrograms { .. }
            | UpdaterError::CasyncBundle { .. } => Failure::of(FailedStep::BundleContent, &error),
            other => Failure::of(FailedStep::Install, &other),
        })?;
        if report.bootname != job.target {
            return Err(Failure::new(
                FailedStep::Install,
                format!(
                    "wrote slot {} where {} was expected",
                    report.bootname, job.target
                ),
            ));
        }
        Ok(())
    }
}

fn file_hash_differs() -> Failure {
    Failure::new(
        FailedStep::FileHash,
        "the staged file's sha256 is not the one the signed manifest names",
    )
}

/// Makes the staged file durable and checks it is exactly `size` bytes. The relay cannot
/// sync what it writes: the staged bytes are made durable before they are verified, so an
/// install cut short finds the same verified bytes at the next boot.
fn sync_staged_file(path: &Path, size: u64) -> Result<(), Failure> {
    let failed = |error: std::io::Error| {
        Failure::new(
            FailedStep::Download,
            format!("reading the staged file {}: {error}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(&failed)?;
    file.sync_all().map_err(&failed)?;
    let staged = file.metadata().map_err(&failed)?.len();
    if staged != size {
        return Err(Failure::new(
            FailedStep::FileHash,
            format!("{staged} bytes were staged; the signed manifest says {size}"),
        ));
    }
    Ok(())
}

/// The staged file's sha256 (when the bundle did not verify: was it the download?).
fn staged_sha256(path: &Path) -> Result<[u8; 32], Failure> {
    bundle::sha256_file(path)
        .map(|(sha256, _)| sha256)
        .map_err(|error| Failure::of(FailedStep::Download, &error))
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
