//! An OS update workflow on the device, from the relay's `stage` to the confirmed boot: the
//! state the `update` capability reads and writes ([`Updates`]), and the checks each step
//! makes before anything changes. The long step, verifying and writing the other slot, runs
//! outside the lock as an [`InstallJob`] (`crate::install_job`).
//!
//! Every transition is saved ([`crate::record`]) before it is answered, and what a reboot
//! interrupted is read back from the record and the boot-selection state:
//! - `Installing` and the other slot booted: the install was cut short; the slot is marked
//!   bad, the staged file is still there, so the workflow goes back to `Downloading` (the
//!   relay asks to install again, and everything is verified again);
//! - `Installed` and its slot booted: on trial, `Confirming` until the slot is confirmed
//!   (then `Applied`);
//! - `Installed` and another slot booted: the written slot is still the first choice with a
//!   try left (no reboot yet), or GRUB gave up on it (then `Failed`, rolled back).
//!
//! A workflow downloads a delta bundle instead of the full one when the manifest offers one
//! for the running image ([`crate::file_choice`]). If the delta does not install — another
//! base, a download or a patch that does not verify, a result that is not the signed image —
//! the workflow goes back to `Downloading`, for the full bundle this time: nothing of the
//! running slot was touched, and the relay simply fetches the file the status names.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use testudo_os_update::manifest::UpdateId;
use testudo_os_update::result::FailedStep;
use testudo_os_update::signature::{self, RootKeys};
use testudo_os_update::update_scheme::{device_compatibility, UpdatePhase, UpdateStatus};
use testudo_updater::bootloader::grub::GrubBackend;
use testudo_updater::{slot, version, SystemConf};

use crate::file_choice;
use crate::install_job::InstallJob;
use crate::record::{DeviceRecord, Stage, UpdateDir, WorkflowRecord};
use crate::UpdateServiceError;

/// The grubenv, shared by the confirmation and the installs so their writes never
/// interleave.
pub type SharedGrub = Arc<Mutex<GrubBackend>>;

/// Locks `grub` (a panic elsewhere does not make the boot state unusable).
pub fn lock_grub(grub: &SharedGrub) -> std::sync::MutexGuard<'_, GrubBackend> {
    grub.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the updater finds what the image gives it.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Its own directory on the data partition (staging file and record).
    pub dir: PathBuf,
    /// RAUC's `system.conf` (slots, keyring, `compatible`, `min-bundle-version`).
    pub system_conf: PathBuf,
    /// The root keys manifest signatures chain to (a JWK set).
    pub root_keys: PathBuf,
    /// The slot running now (bootname).
    pub booted: String,
    /// The version of the system running now (the plan's `version`).
    pub system_version: String,
}

/// Why a request was refused as a whole; the relay sees an errno and tries again later or
/// drops the request. Refusals of an update itself are a [`UpdatePhase::Failed`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefused {
    /// The request names a workflow that is not the current one.
    #[error("workflow {workflow:?} is not the current one")]
    NotCurrent {
        /// The workflow named.
        workflow: String,
    },
    /// The current workflow is not where the request needs it.
    #[error("the current workflow is {phase}, not {needed}")]
    WrongPhase {
        /// Where it is.
        phase: &'static str,
        /// Where the request needs it.
        needed: &'static str,
    },
    /// Something runs that a new workflow must not interrupt (an install, a trial boot).
    #[error("busy: {reason}")]
    Busy {
        /// What runs.
        reason: &'static str,
    },
}

/// A failed step of a workflow: what the status and the twin report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The step.
    pub step: FailedStep,
    /// Why, in one line.
    pub detail: String,
}

impl Failure {
    /// A failure of `step` for `detail`.
    pub fn new(step: FailedStep, detail: impl Into<String>) -> Failure {
        Failure {
            step,
            detail: detail.into(),
        }
    }

    /// A failure of `step` whose detail is `error`'s chain.
    pub fn of(step: FailedStep, error: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::new(step, testudo_error_chain::error_chain(error))
    }

    /// The phase that reports it.
    pub fn phase(&self) -> UpdatePhase {
        UpdatePhase::Failed {
            step: self.step.name().to_owned(),
            extended_result_code: self.step.extended_result_code(),
            detail: self.detail.clone(),
        }
    }
}

/// The OS update state of the device.
#[derive(Debug)]
pub struct Updates {
    config: UpdateConfig,
    dir: UpdateDir,
    record: DeviceRecord,
    grub: SharedGrub,
    /// Bytes done and total of the install running now.
    progress: (u64, u64),
    /// Whether the booted slot is confirmed (this boot).
    confirmed: bool,
    /// Why the kept record was set aside, when it could not be read.
    damaged_record: Option<String>,
}

impl Updates {
    /// Reads the record and settles what a reboot interrupted (see the module docs).
    pub fn open(config: UpdateConfig, grub: SharedGrub) -> Result<Updates, UpdateServiceError> {
        let dir = UpdateDir::new(&config.dir)?;
        let (record, damaged_record) = match dir.load() {
            Ok(record) => (record, None),
            Err(error @ UpdateServiceError::Record { .. }) => (
                DeviceRecord::default(),
                Some(testudo_error_chain::error_chain(&error)),
            ),
            Err(error) => return Err(error),
        };
        let mut updates = Updates {
            config,
            dir,
            record,
            grub,
            progress: (0, 0),
            confirmed: false,
            damaged_record,
        };
        updates.settle_after_boot()?;
        Ok(updates)
    }

    /// What a `read` of the capability returns.
    pub fn status(&self) -> UpdateStatus {
        let booted = &self.config.booted;
        let (workflow, update_id, phase) = match &self.record.current {
            None => (None, None, UpdatePhase::Idle),
            Some(current) => {
                let phase = match &current.stage {
                    Stage::Downloading => {
                        let (file_id, size) = self.wanted_file(current).unwrap_or_default();
                        UpdatePhase::Downloading {
                            file_id,
                            size,
                            staged: self.dir.staged_bytes(),
                        }
                    }
                    Stage::Installing { .. } => UpdatePhase::Installing {
                        done: self.progress.0,
                        total: self.progress.1,
                    },
                    Stage::Installed { slot } if slot == booted => {
                        UpdatePhase::Confirming { slot: slot.clone() }
                    }
                    Stage::Installed { slot } => UpdatePhase::Installed { slot: slot.clone() },
                    Stage::Ended { outcome } => outcome.clone(),
                };
                (
                    Some(current.workflow.clone()),
                    current.update_id.clone(),
                    phase,
                )
            }
        };
        UpdateStatus {
            workflow,
            update_id,
            phase,
            installed_update_id: self.record.installed.get(booted).cloned(),
            booted_slot: booted.clone(),
        }
    }

    /// The staging file (for the relay's raw handle) while a download is wanted.
    pub fn staging_file(&self) -> Result<std::fs::File, RequestRefused> {
        match &self.record.current {
            Some(WorkflowRecord {
                stage: Stage::Downloading,
                ..
            }) => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.dir.staged())
                .map_err(|_| RequestRefused::Busy {
                    reason: "the staging file cannot be opened",
                }),
            _ => Err(RequestRefused::WrongPhase {
                phase: self.phase_name(),
                needed: "downloading",
            }),
        }
    }

    /// `stage`: starts `workflow`, or does nothing when it is the current one.
    pub fn stage(
        &mut self,
        workflow: &str,
        manifest: &str,
        signature: &str,
    ) -> Result<(), UpdateServiceError> {
        if let Some(current) = &self.record.current {
            if current.workflow == workflow {
                return Ok(());
            }
            match current.stage {
                Stage::Installing { .. } => {
                    return Err(UpdateServiceError::Refused(RequestRefused::Busy {
                        reason: "another workflow is being installed",
                    }))
                }
                Stage::Installed { ref slot } if *slot == self.config.booted => {
                    return Err(UpdateServiceError::Refused(RequestRefused::Busy {
                        reason: "the running slot is on trial",
                    }))
                }
                _ => {}
            }
        }
        self.dir.remove_staged()?;
        let (update_id, delta, stage) = match self.accept(manifest, signature) {
            Ok(Accepted::Wanted { update_id, delta }) => {
                (Some(update_id), delta, Stage::Downloading)
            }
            Ok(Accepted::Installed(update_id)) => (
                Some(update_id),
                None,
                Stage::Ended {
                    outcome: UpdatePhase::Applied,
                },
            ),
            Err((update_id, failure)) => (
                update_id,
                None,
                Stage::Ended {
                    outcome: failure.phase(),
                },
            ),
        };
        if matches!(stage, Stage::Downloading) {
            self.create_staging_file()?;
        }
        self.record.current = Some(WorkflowRecord {
            workflow: workflow.to_owned(),
            manifest: manifest.to_owned(),
            signature: signature.to_owned(),
            update_id,
            delta,
            stage,
        });
        self.dir.save(&self.record)
    }

    /// `install`: the staged file is complete; returns the job that verifies and writes it.
    pub fn begin_install(&mut self, workflow: &str) -> Result<InstallJob, UpdateServiceError> {
        self.require_current(workflow, "downloading", |stage| {
            matches!(stage, Stage::Downloading)
        })?;
        let current = self
            .record
            .current
            .clone()
            .ok_or(UpdateServiceError::Refused(RequestRefused::NotCurrent {
                workflow: workflow.to_owned(),
            }))?;
        let conf = match SystemConf::load(&self.config.system_conf) {
            Ok(conf) => conf,
            Err(error) => {
                self.end(Failure::of(FailedStep::Install, &error).phase())?;
                return Err(UpdateServiceError::SystemConf {
                    path: self.config.system_conf.clone(),
                    source: error,
                });
            }
        };
        let target = slot::by_name(&conf, &booted_slot_name(&conf, &self.config.booted)?)
            .and_then(|booted| slot::other_bootable(&conf, booted))
            .map(|slot| slot.bootname.clone().unwrap_or_default())
            .map_err(|source| UpdateServiceError::SystemConf {
                path: self.config.system_conf.clone(),
                source,
            })?;
        if let Some(current) = self.record.current.as_mut() {
            current.stage = Stage::Installing {
                slot: target.clone(),
            };
        }
        self.dir.save(&self.record)?;
        self.progress = (0, 0);
        Ok(InstallJob {
            workflow: workflow.to_owned(),
            manifest: current.manifest,
            signature: current.signature,
            root_keys: self.config.root_keys.clone(),
            staged: self.dir.staged(),
            delta: current.delta,
            conf,
            booted: self.config.booted.clone(),
            target,
            grub: Arc::clone(&self.grub),
        })
    }

    /// Progress of the install running now.
    pub fn set_progress(&mut self, done: u64, total: u64) {
        self.progress = (done, total);
    }

    /// The install of `workflow` ended: written (and made the next boot, on trial) or failed.
    /// A delta that failed where the full bundle may succeed sends the workflow back to
    /// `Downloading`, for the full bundle: the delta's failure is returned then.
    pub fn finish_install(
        &mut self,
        workflow: &str,
        outcome: Result<(), Failure>,
    ) -> Result<Option<Failure>, UpdateServiceError> {
        let Some(current) = self.record.current.as_mut() else {
            return Ok(None);
        };
        if current.workflow != workflow {
            return Ok(None);
        }
        let Stage::Installing { slot } = current.stage.clone() else {
            return Ok(None);
        };
        match outcome {
            Ok(()) => {
                current.stage = Stage::Installed { slot };
                self.dir.save(&self.record)?;
                // The slot holds the update now; the staged copy would only take space.
                self.dir.remove_staged()?;
                Ok(None)
            }
            Err(failure) if current.delta.is_some() && full_bundle_may_succeed(failure.step) => {
                current.delta = None;
                current.stage = Stage::Downloading;
                self.progress = (0, 0);
                self.dir.remove_staged()?;
                self.create_staging_file()?;
                self.dir.save(&self.record)?;
                Ok(Some(failure))
            }
            Err(failure) => self.end(failure.phase()).map(|()| None),
        }
    }

    /// `reboot`: the workflow is installed; true when the device is to reboot now.
    pub fn reboot(&mut self, workflow: &str) -> Result<(), UpdateServiceError> {
        let booted = self.config.booted.clone();
        self.require_current(
            workflow,
            "installed",
            |stage| matches!(stage, Stage::Installed { slot } if *slot != booted),
        )
    }

    /// `cancel`: gives up `workflow` before it is installed.
    pub fn cancel(&mut self, workflow: &str) -> Result<(), UpdateServiceError> {
        if let Some(WorkflowRecord {
            workflow: current,
            stage: Stage::Ended { .. },
            ..
        }) = &self.record.current
        {
            if current == workflow {
                return Ok(());
            }
        }
        self.require_current(workflow, "downloading", |stage| {
            matches!(stage, Stage::Downloading)
        })?;
        self.dir.remove_staged()?;
        self.end(UpdatePhase::Cancelled)
    }

    /// The booted slot was confirmed: a slot installed by the current workflow is applied.
    pub fn confirmed(&mut self, slot: &str) -> Result<(), UpdateServiceError> {
        self.confirmed = true;
        let Some(current) = self.record.current.as_mut() else {
            return Ok(());
        };
        if matches!(&current.stage, Stage::Installed { slot: installed } if installed == slot) {
            if let Some(update_id) = current.update_id.clone() {
                self.record.installed.insert(slot.to_owned(), update_id);
            }
            return self.end(UpdatePhase::Applied);
        }
        Ok(())
    }

    /// Why the kept record could not be read, when it could not (a fresh record is used).
    pub fn damaged_record(&self) -> Option<&str> {
        self.damaged_record.as_deref()
    }

    /// Whether the booted slot was confirmed in this boot.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// An empty staging file, for the relay's download.
    fn create_staging_file(&self) -> Result<(), UpdateServiceError> {
        std::fs::File::create(self.dir.staged())
            .map(drop)
            .map_err(|source| UpdateServiceError::UpdateDir {
                step: "creating the staging file in",
                path: self.config.dir.clone(),
                source,
            })
    }

    /// Ends the current workflow with `outcome`.
    fn end(&mut self, outcome: UpdatePhase) -> Result<(), UpdateServiceError> {
        if let Some(current) = self.record.current.as_mut() {
            current.stage = Stage::Ended { outcome };
        }
        self.progress = (0, 0);
        self.dir.save(&self.record)
    }

    /// Refuses unless `workflow` is current and its stage passes `wanted`.
    fn require_current(
        &self,
        workflow: &str,
        needed: &'static str,
        wanted: impl Fn(&Stage) -> bool,
    ) -> Result<(), UpdateServiceError> {
        match &self.record.current {
            Some(current) if current.workflow == workflow => {
                if wanted(&current.stage) {
                    Ok(())
                } else {
                    Err(UpdateServiceError::Refused(RequestRefused::WrongPhase {
                        phase: self.phase_name(),
                        needed,
                    }))
                }
            }
            _ => Err(UpdateServiceError::Refused(RequestRefused::NotCurrent {
                workflow: workflow.to_owned(),
            })),
        }
    }

    /// The current workflow's phase, by name.
    fn phase_name(&self) -> &'static str {
        match self.record.current.as_ref().map(|current| &current.stage) {
            None => "idle",
            Some(Stage::Downloading) => "downloading",
            Some(Stage::Installing { .. }) => "installing",
            Some(Stage::Installed { .. }) => "installed",
            Some(Stage::Ended { .. }) => "ended",
        }
    }

    /// Verifies a new workflow's manifest and its fit to this device, before any download.
    fn accept(
        &self,
        manifest: &str,
        signature: &str,
    ) -> Result<Accepted, (Option<UpdateId>, Failure)> {
        let roots = std::fs::read(&self.config.root_keys)
            .map_err(|error| {
                Failure::new(
                    FailedStep::ManifestSignature,
                    format!(
                        "reading the device's root keys {}: {error}",
                        self.config.root_keys.display()
                    ),
                )
            })
            .and_then(|bytes| {
                RootKeys::from_jwks(&bytes)
                    .map_err(|error| Failure::of(FailedStep::ManifestSignature, &error))
            })
            .map_err(|failure| (None, failure))?;
        let verified = signature::verify(manifest, signature, &roots)
            .map_err(|error| (None, Failure::of(FailedStep::ManifestSignature, &error)))?;
        let update_id = verified.manifest.update_id.clone();
        let failed = |failure: Failure| (Some(update_id.clone()), failure);
        let step = verified
            .manifest
            .bundle_step()
            .map_err(|error| failed(Failure::of(FailedStep::ManifestContent, &error)))?;
        let conf = SystemConf::load(&self.config.system_conf)
            .map_err(|error| failed(Failure::of(FailedStep::Install, &error)))?;
        let device = device_compatibility(&conf.compatible);
        if !verified.manifest.is_compatible(&device) {
            return Err(failed(Failure::new(
                FailedStep::Incompatible,
                format!(
                    "the manifest's compatibility {:?} does not include this device ({device:?})",
                    verified.manifest.compatibility
                ),
            )));
        }
        let criteria = step.installed_criteria;
        if criteria == self.config.system_version {
            return Ok(Accepted::Installed(update_id));
        }
        if let Some(min) = &conf.min_bundle_version {
            let running = &self.config.system_version;
            for floor in [min, running] {
                if version::compare(criteria, floor).is_lt() {
                    return Err(failed(Failure::new(
                        FailedStep::Downgrade,
                        format!(
                            "version {criteria} is older than {floor} (this device refuses downgrades)"
                        ),
                    )));
                }
            }
        }
        if let Some(free) = free_bytes(&self.config.dir) {
            if free < step.file.size_in_bytes {
                return Err(failed(Failure::new(
                    FailedStep::Staging,
                    format!(
                        "the data partition has {free} bytes free; the bundle needs {}",
                        step.file.size_in_bytes
                    ),
                )));
            }
        }
        let delta = file_choice::wanted_delta(
            step.file,
            file_choice::running_image_sha256(&conf, &self.config.booted),
        );
        Ok(Accepted::Wanted { update_id, delta })
    }

    /// The file the current workflow downloads: its id and size (the delta's, if one is
    /// wanted, else the bundle step's file).
    fn wanted_file(&self, current: &WorkflowRecord) -> Option<(String, u64)> {
        let manifest = self.recorded_manifest(current)?;
        let step = manifest.bundle_step().ok()?;
        match &current.delta {
            Some(id) => step
                .file
                .related_files
                .get(id)
                .map(|delta| (id.clone(), delta.size_in_bytes)),
            None => Some((step.file_id.to_owned(), step.file.size_in_bytes)),
        }
    }

    /// The manifest of a recorded workflow (verified when it was staged; parsed again).
    fn recorded_manifest(
        &self,
        current: &WorkflowRecord,
    ) -> Option<testudo_os_update::manifest::ImportManifest> {
        testudo_os_update::manifest::parse(current.manifest.as_bytes()).ok()
    }

    /// Settles a workflow a reboot (or a restart of the updater) interrupted.
    fn settle_after_boot(&mut self) -> Result<(), UpdateServiceError> {
        let booted = self.config.booted.clone();
        let Some(current) = self.record.current.as_mut() else {
            return Ok(());
        };
        match current.stage.clone() {
            Stage::Installing { slot } if slot == booted => {
                current.stage = Stage::Installed { slot };
            }
            Stage::Installing { .. } => {
                // Cut short: the slot is marked bad; the staged file is verified again.
                current.stage = Stage::Downloading;
            }
            Stage::Installed { slot } if slot != booted => {
                let env = lock_grub(&self.grub).load();
                let pending = env.is_ok_and(|env| {
                    env.order().first() == Some(&slot)
                        && env.get(&format!("{slot}_OK")) == Some("1")
                });
                if !pending {
                    current.stage = Stage::Ended {
                        outcome: Failure::new(
                            FailedStep::RolledBack,
                            format!("slot {slot} did not become healthy within its boot tries; slot {booted} runs again"),
                        )
                        .phase(),
                    };
                }
            }
            _ => return Ok(()),
        }
        self.dir.save(&self.record)
    }
}

/// Whether a delta that failed at `step` leaves the full bundle worth downloading: not when
/// the update itself is refused (its manifest, compatibility, version), which the full
/// bundle shares.
fn full_bundle_may_succeed(step: FailedStep) -> bool {
    !matches!(
        step,
        FailedStep::ManifestSignature
            | FailedStep::ManifestContent
            | FailedStep::Incompatible
            | FailedStep::Downgrade
    )
}

/// What `accept` found.
enum Accepted {
    /// The update is wanted: download it (the delta with file id `delta`, if one fits).
    Wanted {
        /// What it installs.
        update_id: UpdateId,
        /// The delta to download instead of the full bundle.
        delta: Option<String>,
    },
    /// The running system already is this update's version (ADU's installed criteria).
    Installed(UpdateId),
}

/// The `system.conf` name of the booted slot.
fn booted_slot_name(conf: &SystemConf, booted: &str) -> Result<String, UpdateServiceError> {
    conf.slot_by_bootname(booted)
        .map(|slot| slot.name())
        .ok_or_else(|| UpdateServiceError::UnknownSlot {
            slot: booted.to_owned(),
        })
}

/// Bytes free for the updater in `dir`'s file system; None when it cannot be told.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(stat.blocks_available().saturating_mul(stat.fragment_size()))
}
