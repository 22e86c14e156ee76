//! Relaying Azure Device Update (ADU) OS updates from the device twin to the updater
//! component over its `update` capability (`testudo_os_update::update_scheme`), and the
//! updater's account back to the twin in ADU's `deviceUpdate` shape
//! (`testudo_os_update::twin`). The agent is an untrusted transport: the updater verifies the
//! manifest's signature and fit before a byte is downloaded, and the staged bundle's size,
//! sha256, CMS signature and version before it writes a slot. The relay decides nothing.
//!
//! What the relay does:
//! - **Connection.** After every connection to the hub it tells the updater so, once per run
//!   ([`OsUpdateRelay::connected`]: part of a trial slot's health), then reads the updater's
//!   status and reports it ([`OsUpdateRelay::report_status`]): `idle` as state 0 with the
//!   installed update, `applied` as state 0 with result 700 and the installed update, `failed`
//!   as state 255 with the updater's extended result code and detail, `cancelled` as state 0
//!   with result -1, anything still under way as state 6; a slot `confirming` (booted on
//!   trial) is read again every [`TRIAL_POLL`] until its end is known, then reported.
//! - **Desired `deviceUpdate.service`** (each desired change that carries it, and the full
//!   twin after connecting; [`OsUpdateRelay::take_desired`]): acknowledged with `ac` 200, or
//!   406 when it is not of ADU's shape (then nothing else happens). A workflow (its action,
//!   id and `retryTimestamp`) already taken on in this run is not taken on again; a new one
//!   replaces the one in progress, which stops at its next step without reporting.
//! - **Apply** (action 3; [`OsUpdateRelay::process`]): state 6 with the workflow is reported,
//!   then `stage` (the manifest and its signature byte for byte) is written, and the status
//!   followed: `downloading` → the twin's `fileUrls[file_id]` is fetched over HTTPS through the
//!   `net` route from byte `staged` to `size` ([`crate::module_fetch::fetch_range`], which
//!   resumes interrupted transfers itself) into the staging file the updater hands out
//!   (`open_raw(STAGED, Write)`), then `install` is written and the status read every
//!   [`INSTALL_POLL`]; `installed` → reported (state 6), then `reboot`; `confirming` → read
//!   again until it ends; `applied`, `failed`, `cancelled` → reported as above. While the
//!   updater is busy (an install or a trial runs) `stage` is asked again every [`BUSY_POLL`].
//! - **Cancel** (action 255): `cancel` is written and state 0 with result -1 reported (also
//!   when the updater has no such workflow: nothing of it runs); when the updater refuses
//!   (the update is already installed) its status is reported instead.
//! - **Failures on the relay's side** (no URL for the file, the download, the staging file,
//!   the route) are reported as state 255 with the extended result code of the step
//!   (`FailedStep::Download` for the download, `Staging` for the staging file and `stage`,
//!   `Install` for `install` and `reboot`). The staged bytes stay: the next delivery of the
//!   workflow (a new `retryTimestamp`) or the next agent start resumes from `staged`. The
//!   relay does not retry on its own; ADU's retry is the retry.
//!
//! Every report carries `deviceProperties` (manufacturer [`MANUFACTURER`], model the system's
//! RAUC `compatible`) and `compatPropertyNames` ([`DEFAULT_COMPAT_PROPERTY_NAMES`]).
//!
//! The staging file's descriptor is made append-only (`fcntl`), so the download lands at the
//! file's end, which is the updater's `staged` (its length): the agent's seccomp role allows
//! `write` and `fcntl`, not `lseek` or `pwrite64`. The relay works on one workflow at a time.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use testudo_error_chain::error_chain;
use testudo_os_update::manifest::UpdateId;
use testudo_os_update::result::{FailedStep, FAILURE};
use testudo_os_update::twin::{
    acknowledgement, desired_update, AgentReport, AgentState, DesiredUpdate, DeviceProperties,
    InstallResult, WorkflowAction, ACCEPTED, COMPONENT, DEFAULT_COMPAT_PROPERTY_NAMES, REJECTED,
};
use testudo_os_update::update_scheme::{
    UpdatePhase, UpdateRequest, UpdateStatus, MANUFACTURER, MAX_STATUS_BYTES, STAGED,
};
use testudo_scheme::{Errno, Handle, Rights};
use tokio::time::Instant;

use crate::app_deployments::Fetcher;
use crate::component_log::ComponentLog;
use crate::error::AgentError;
use crate::module_fetch::{fetch_range, RangeRequest};
use crate::twin::{ChangeKind, DesiredChange};
use crate::{Acknowledgement, AgentHandle};

/// How often the status is read while the updater installs.
pub const INSTALL_POLL: Duration = Duration::from_millis(200);

/// Longest an install may take once asked for before the relay gives up waiting (reported
/// as a failure of the install step; the updater goes on and its end is reported at the next
/// connection).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How often the status is read while a slot is on trial.
pub const TRIAL_POLL: Duration = Duration::from_secs(2);

/// Longest the relay follows a trial; afterwards its end is reported at the next connection.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How often `stage` is asked again while the updater is busy (`EBUSY`: an install or a
/// trial runs).
pub const BUSY_POLL: Duration = Duration::from_secs(2);

/// Longest `stage` is asked again while the updater is busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Longest the relay waits for the hub to take the `installed` report before it asks the
/// updater to reboot.
pub const REPORT_BEFORE_REBOOT: Duration = Duration::from_secs(10);

/// The relay: the updater's `update` route and the workflow taken on.
#[derive(Debug)]
pub struct OsUpdateRelay {
    route: Handle,
    log: Arc<ComponentLog>,
    /// Whether the updater has been told of a connection in this run.
    told_connected: AtomicBool,
    /// What every report says of the device.
    device: DeviceProperties,
    /// The workflow taken on last in this run.
    taken: Mutex<Option<Taken>>,
    /// Counts the workflows taken on: work for an older one stops.
    generation: AtomicU64,
    /// Counts the status reports after connections: an older one's polling stops.
    status_watch: AtomicU64,
    /// The installed update as the updater last said.
    installed: Mutex<Option<UpdateId>>,
    /// One exchange with the updater at a time (a workflow's steps, a status report).
    work: tokio::sync::Mutex<()>,
}

/// A workflow as taken on: what makes a delivery the same one again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Taken {
    action: WorkflowAction,
    id: String,
    retry_timestamp: Option<String>,
}

/// A workflow to process ([`OsUpdateRelay::process`]), as [`OsUpdateRelay::take_desired`]
/// took it on.
#[derive(Debug, Clone)]
pub struct Goal {
    update: DesiredUpdate,
    generation: u64,
}

impl Goal {
    /// The desired update.
    pub fn update(&self) -> &DesiredUpdate {
        &self.update
    }
}

/// Why a workflow's processing stopped before the updater decided.
enum Halt {
    /// A newer workflow was taken on: it reports.
    Superseded,
    /// The relay failed: reported as a failure at `step`.
    Failed { step: FailedStep, error: AgentError },
}

impl Halt {
    fn failed(step: FailedStep, error: AgentError) -> Halt {
        Halt::Failed { step, error }
    }
}

/// Why a write to the staging file is refused: a newer workflow was taken on.
#[derive(Debug, thiserror::Error)]
#[error("a newer workflow was taken on")]
struct Superseded;

/// The staging file as the download's sink; refuses to go on once the workflow is replaced.
struct StagedSink<'a> {
    file: std::fs::File,
    generation: &'a AtomicU64,
    mine: u64,
}

impl std::io::Write for StagedSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.generation.load(Ordering::SeqCst) != self.mine {
            return Err(std::io::Error::other(Superseded));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes every write to `file` land at its end (`O_APPEND`).
fn append_only(file: &std::fs::File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor `file` keeps open; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: F_SETFL with an int argument on the same open descriptor.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_APPEND) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A URL as logged: without its query (a SAS token).
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

impl OsUpdateRelay {
    /// The relay over `route`, logging to `log`, for a system whose RAUC compatible (the
    /// reported `model`) is `compatible`.
    pub fn new(route: Handle, log: Arc<ComponentLog>, compatible: &str) -> OsUpdateRelay {
        OsUpdateRelay {
            route,
            log,
            told_connected: AtomicBool::new(false),
            device: DeviceProperties::new(MANUFACTURER, compatible),
            taken: Mutex::new(None),
            generation: AtomicU64::new(0),
            status_watch: AtomicU64::new(0),
            installed: Mutex::new(None),
            work: tokio::sync::Mutex::new(()),
        }
    }

    /// The agent reached the hub: tells the updater (once per run; a refusal is logged and
    /// told again at the next connection).
    pub fn connected(&self) {
        if self.told_connected.load(Ordering::SeqCst) {
            return;
        }
        match self.route.write(&UpdateRequest::Connected.to_bytes()) {
            Ok(_) => self.told_connected.store(true, Ordering::SeqCst),
            Err(error) => self.log.line(&format!(
                "cloud: the updater was not told of the connection: {}",
                error_chain(&error)
            )),
        }
    }

    /// Acknowledges the desired `deviceUpdate.service` of `change` (when the change carries
    /// it: a full twin, or a patch touching `deviceUpdate`) and returns the workflow to
    /// process, if it is one not taken on yet in this run. A service not of ADU's shape is
    /// acknowledged 406 and nothing else happens; an action other than apply or cancel is
    /// acknowledged and not acted on.
    pub fn take_desired(&self, agent: &AgentHandle, change: &DesiredChange) -> Option<Goal> {
        if change.kind == ChangeKind::Patch && !change.patch.contains_key(COMPONENT) {
            return None;
        }
        let document = json!({ COMPONENT: change.desired.get(COMPONENT)? });
        let update = match desired_update(&document)? {
            Ok(update) => update,
            Err(error) => {
                let why = error_chain(&error);
                self.log.line(&format!(
                    "os updates: desired deviceUpdate at $version {} refused: {why}",
                    change.version
                ));
                self.acknowledge(agent, change.version, REJECTED, &why);
                return None;
            }
        };
        let id = update.workflow.id.clone();
        match update.workflow.action {
            WorkflowAction::Other(code) => {
                let why = format!(
                    "workflow {id}: action {code} is not acted on (only 3, apply, and 255, cancel)"
                );
                self.log.line(&format!("os updates: {why}"));
                self.acknowledge(agent, change.version, ACCEPTED, &why);
                return None;
            }
            WorkflowAction::Apply
                if update.update_manifest.is_none()
                    || update.update_manifest_signature.is_none() =>
            {
                let why = format!(
                    "workflow {id}: an apply needs updateManifest and updateManifestSignature"
                );
                self.log.line(&format!("os updates: {why}"));
                self.acknowledge(agent, change.version, REJECTED, &why);
                return None;
            }
            WorkflowAction::Apply | WorkflowAction::Cancel => {}
        }
        let key = Taken {
            action: update.workflow.action,
            id: id.clone(),
            retry_timestamp: update.workflow.retry_timestamp.clone(),
        };
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if taken.as_ref() == Some(&key) {
            drop(taken);
            self.acknowledge(
                agent,
                change.version,
                ACCEPTED,
                &format!("workflow {id} is already taken on"),
            );
            return None;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *taken = Some(key);
        drop(taken);
        self.acknowledge(
            agent,
            change.version,
            ACCEPTED,
            &format!("workflow {id} taken on"),
        );
        Some(Goal { update, generation })
    }

    /// Processes `goal` with the updater and reports each step, until the updater decided,
    /// the device reboots into the update, or a newer workflow replaces it (see the module
    /// docs). `fetcher` is how the bundle is downloaded (none: no `net` route).
    pub async fn process(
        self: Arc<Self>,
        agent: AgentHandle,
        fetcher: Option<Fetcher>,
        goal: Goal,
    ) {
        let _work = self.work.lock().await;
        if !self.is_current(&goal) {
            return;
        }
        let workflow = &goal.update.workflow;
        self.log.line(&format!(
            "os updates: workflow {}: {}",
            workflow.id,
            match workflow.action {
                WorkflowAction::Cancel => "cancelling",
                _ => "applying",
            }
        ));
        let outcome = match workflow.action {
            WorkflowAction::Cancel => self.cancel(&agent, &goal),
            _ => self.apply(&agent, fetcher.as_ref(), &goal).await,
        };
        match outcome {
            Ok(()) => {}
            Err(Halt::Superseded) => self.log.line(&format!(
                "os updates: workflow {}: a newer workflow replaces it",
                workflow.id
            )),
            Err(Halt::Failed { step, error }) => {
                let detail = error_chain(&error);
                self.log
                    .line(&format!("os updates: failed at {step}: {detail}"));
                let installed = self.last_installed();
                self.report(
                    &agent,
                    AgentState::Failed,
                    Some((workflow.action, workflow.id.clone())),
                    installed,
                    Some(InstallResult::failed(step, &detail)),
                );
            }
        }
    }

    /// Reads the updater's status and reports it (see the module docs); while a slot is on
    /// trial, reads it again every [`TRIAL_POLL`] (at most [`TRIAL_TIMEOUT`]) and reports its
    /// end. Called after every connection; stops early when a workflow is taken on (its
    /// processing reports) or a later connection reports.
    pub async fn report_status(self: Arc<Self>, agent: AgentHandle) {
        let watch = self.status_watch.fetch_add(1, Ordering::SeqCst) + 1;
        let generation = self.generation.load(Ordering::SeqCst);
        let started = Instant::now();
        let mut reported: Option<UpdatePhase> = None;
        loop {
            {
                let _work = self.work.lock().await;
                if self.generation.load(Ordering::SeqCst) != generation
                    || self.status_watch.load(Ordering::SeqCst) != watch
                {
                    return;
                }
                let status = match self.read_status() {
                    Ok(status) => status,
                    Err(error) => {
                        self.log.line(&format!(
                            "os updates: nothing reported: {}",
                            error_chain(&error)
                        ));
                        return;
                    }
                };
                if reported.as_ref() != Some(&status.phase) {
                    self.report_from_status(&agent, &status);
                    reported = Some(status.phase.clone());
                }
                if !matches!(status.phase, UpdatePhase::Confirming { .. }) {
                    return;
                }
            }
            if started.elapsed() >= TRIAL_TIMEOUT {
                self.log.line(
                    "os updates: the slot is still on trial; its end is reported at the next connection",
                );
                return;
            }
            tokio::time::sleep(TRIAL_POLL).await;
        }
    }

    /// Action 3: stage, download, install, reboot (see the module docs).
    async fn apply(
        &self,
        agent: &AgentHandle,
        fetcher: Option<&Fetcher>,
        goal: &Goal,
    ) -> Result<(), Halt> {
        let id = &goal.update.workflow.id;
        let before = self
            .read_status()
            .map_err(|error| Halt::failed(FailedStep::Staging, error))?;
        // A workflow the updater already ended (a redelivery after a reboot) is only
        // reported, without a state 6 before.
        if !(before.workflow.as_ref() == Some(id) && before.phase.is_final()) {
            self.report(
                agent,
                AgentState::DeploymentInProgress,
                Some((WorkflowAction::Apply, id.clone())),
                before.installed_update_id.clone(),
                None,
            );
        }
        self.stage(goal).await?;
        let mut step = FailedStep::Staging;
        let mut status = self.read_ours(goal, step)?;
        let mut install_asked: Option<Instant> = None;
        let mut trial_since: Option<Instant> = None;
        let mut install_share = 0;
        // File ids downloaded and handed over for install: the updater may want another file
        // after one (the full bundle after a delta that did not install), never one again.
        let mut installed_files: Vec<String> = Vec::new();
        loop {
            self.check_current(goal)?;
            match &status.phase {
                UpdatePhase::Downloading {
                    file_id,
                    size,
                    staged,
                } => {
                    if installed_files.contains(file_id) {
                        return Err(Halt::failed(
                            FailedStep::Install,
                            self.relay_error(
                                id,
                                "the updater wants the bundle again after the install was asked for",
                                None,
                            ),
                        ));
                    }
                    if install_asked.take().is_some() {
                        install_share = 0;
                        self.log.line(&format!(
                            "os updates: workflow {id}: the updater wants file {file_id} now (what was staged did not install): downloading it"
                        ));
                    }
                    self.download(goal, fetcher, file_id, *size, *staged)
                        .await?;
                    installed_files.push(file_id.clone());
                    self.check_current(goal)?;
                    step = FailedStep::Install;
                    self.request(
                        &UpdateRequest::Install {
                            workflow: id.clone(),
                        },
                        step,
                        id,
                        "asking the updater to install the staged bundle",
                    )?;
                    self.log
                        .line(&format!("os updates: workflow {id}: installing"));
                    install_asked = Some(Instant::now());
                }
                UpdatePhase::Installing { done, total } => {
                    step = FailedStep::Install;
                    let share = done.saturating_mul(4) / (*total).max(1);
                    if share > install_share {
                        install_share = share;
                        self.log.line(&format!(
                            "os updates: workflow {id}: installing, {done} of {total}"
                        ));
                    }
                    if install_asked.get_or_insert_with(Instant::now).elapsed() >= INSTALL_TIMEOUT {
                        return Err(Halt::failed(
                            step,
                            self.relay_error(
                                id,
                                "waiting for the updater to install (gave up)",
                                None,
                            ),
                        ));
                    }
                    tokio::time::sleep(INSTALL_POLL).await;
                }
                UpdatePhase::Installed { slot } => {
                    self.log.line(&format!(
                        "os updates: workflow {id}: installed into slot {slot}; rebooting into it"
                    ));
                    let reported = self.report_from_status(agent, &status);
                    if let Some(acknowledgement) = reported {
                        let _ = tokio::time::timeout(REPORT_BEFORE_REBOOT, acknowledgement).await;
                    }
                    self.check_current(goal)?;
                    self.request(
                        &UpdateRequest::Reboot {
                            workflow: id.clone(),
                        },
                        FailedStep::Install,
                        id,
                        "asking the updater to reboot into the update",
                    )?;
                    return Ok(());
                }
                UpdatePhase::Confirming { slot } => {
                    step = FailedStep::Install;
                    if trial_since.is_none() {
                        self.log.line(&format!(
                            "os updates: workflow {id}: slot {slot} is on trial"
                        ));
                    }
                    if trial_since.get_or_insert_with(Instant::now).elapsed() >= TRIAL_TIMEOUT {
                        self.log.line(&format!(
                            "os updates: workflow {id}: slot {slot} is still on trial; its end is reported at the next connection"
                        ));
                        return Ok(());
                    }
                    tokio::time::sleep(TRIAL_POLL).await;
                }
                UpdatePhase::Idle
                | UpdatePhase::Applied
                | UpdatePhase::Failed { .. }
                | UpdatePhase::Cancelled => {
                    self.report_from_status(agent, &status);
                    return Ok(());
                }
            }
            status = self.read_ours(goal, step)?;
        }
    }

    /// Writes `stage`, asking again while the updater is busy.
    async fn stage(&self, goal: &Goal) -> Result<(), Halt> {
        let update = &goal.update;
        let id = &update.workflow.id;
        let request = UpdateRequest::Stage {
            workflow: id.clone(),
            manifest: update.update_manifest.clone().unwrap_or_default(),
            signature: update.update_manifest_signature.clone().unwrap_or_default(),
        };
        let started = Instant::now();
        let mut told = false;
        loop {
            self.check_current(goal)?;
            match self.route.write(&request.to_bytes()) {
                Ok(_) => return Ok(()),
                Err(error)
                    if error.refused_errno() == Some(Errno::EBUSY)
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    if !told {
                        told = true;
                        self.log.line(&format!(
                            "os updates: workflow {id}: the updater is busy (an install or a trial runs); asking again every {} s",
                            BUSY_POLL.as_secs()
                        ));
                    }
                    tokio::time::sleep(BUSY_POLL).await;
                }
                Err(error) => {
                    return Err(Halt::failed(
                        FailedStep::Staging,
                        self.relay_error(
                            id,
                            "staging the workflow with the updater",
                            Some(Box::new(error)),
                        ),
                    ))
                }
            }
        }
    }

    /// Fetches bytes `staged` to `size` of `file_id` into the updater's staging file.
    async fn download(
        &self,
        goal: &Goal,
        fetcher: Option<&Fetcher>,
        file_id: &str,
        size: u64,
        staged: u64,
    ) -> Result<(), Halt> {
        let id = &goal.update.workflow.id;
        if staged >= size {
            // Longer than the bundle: the updater's size check refuses it at install.
            return Ok(());
        }
        let url = goal.update.file_urls.get(file_id).ok_or_else(|| {
            Halt::failed(
                FailedStep::Download,
                AgentError::OsUpdateFileUrl {
                    workflow: id.clone(),
                    file_id: file_id.to_owned(),
                },
            )
        })?;
        let Some(fetcher) = fetcher else {
            return Err(Halt::failed(
                FailedStep::Download,
                self.relay_error(
                    id,
                    "downloading the bundle: the agent has no net route",
                    None,
                ),
            ));
        };
        let staging = |step: &'static str| {
            move |source: Box<dyn std::error::Error + Send + Sync>| {
                Halt::failed(
                    FailedStep::Staging,
                    self.relay_error(id, step, Some(source)),
                )
            }
        };
        let file = self
            .route
            .open_raw(STAGED, Rights::Write)
            .map(std::fs::File::from)
            .map_err(|e| staging("opening the updater's staging file")(Box::new(e)))?;
        append_only(&file)
            .map_err(|e| staging("making the staging file append-only")(Box::new(e)))?;
        self.log.line(&format!(
            "os updates: workflow {id}: downloading {file_id} from {}, bytes {staged} to {size}",
            without_query(url)
        ));
        let mut sink = StagedSink {
            file,
            generation: &self.generation,
            mine: goal.generation,
        };
        let log = Arc::clone(&self.log);
        let mut logged_share = staged.saturating_mul(10) / size;
        let progress = move |received: u64, total: u64| {
            let share = received.saturating_mul(10) / total.max(1);
            if share > logged_share {
                logged_share = share;
                log.line(&format!("os updates: {received} of {total} bytes staged"));
            }
        };
        let request = RangeRequest {
            url,
            size,
            offset: staged,
        };
        let fetched = fetch_range(
            Arc::clone(&fetcher.dialer),
            Arc::clone(&fetcher.tls),
            &request,
            &mut sink,
            progress,
        )
        .await;
        self.check_current(goal)?;
        fetched.map_err(|error| {
            // A refused write is the staging file's failure, not the download's.
            let step = if matches!(error, AgentError::ModuleSink { .. }) {
                FailedStep::Staging
            } else {
                FailedStep::Download
            };
            Halt::failed(
                step,
                self.relay_error(
                    id,
                    "downloading the bundle into the staging file",
                    Some(Box::new(error)),
                ),
            )
        })
    }

    /// Action 255: cancel, and report.
    fn cancel(&self, agent: &AgentHandle, goal: &Goal) -> Result<(), Halt> {
        let id = &goal.update.workflow.id;
        let workflow = Some((WorkflowAction::Cancel, id.clone()));
        let request = UpdateRequest::Cancel {
            workflow: id.clone(),
        };
        let details = match self.route.write(&request.to_bytes()) {
            Ok(_) => "cancelled before it was installed",
            Err(error) if error.refused_errno() == Some(Errno::ESRCH) => {
                "not in progress on the device"
            }
            Err(error) => {
                self.log.line(&format!(
                    "os updates: workflow {id}: the updater refused to cancel it: {}",
                    error_chain(&error)
                ));
                let status = self
                    .read_status()
                    .map_err(|error| Halt::failed(FailedStep::Install, error))?;
                self.report_from_status(agent, &status);
                return Ok(());
            }
        };
        self.log
            .line(&format!("os updates: workflow {id}: {details}"));
        // The installed update as the updater says it now (a failed read keeps the last).
        let _ = self.read_status();
        self.report(
            agent,
            AgentState::Idle,
            workflow,
            self.last_installed(),
            Some(InstallResult::cancelled(details)),
        );
        Ok(())
    }

    /// Writes one request for `goal`'s workflow; a refusal fails `step`.
    fn request(
        &self,
        request: &UpdateRequest,
        step: FailedStep,
        id: &str,
        doing: &'static str,
    ) -> Result<(), Halt> {
        self.route
            .write(&request.to_bytes())
            .map(|_| ())
            .map_err(|error| Halt::failed(step, self.relay_error(id, doing, Some(Box::new(error)))))
    }

    /// Reads the status, which must be about `goal`'s workflow.
    fn read_ours(&self, goal: &Goal, step: FailedStep) -> Result<UpdateStatus, Halt> {
        let status = self
            .read_status()
            .map_err(|error| Halt::failed(step, error))?;
        let id = &goal.update.workflow.id;
        if status.workflow.as_ref() != Some(id) {
            return Err(Halt::failed(
                step,
                self.relay_error(id, "the updater's current workflow is another one", None),
            ));
        }
        Ok(status)
    }

    /// One read of the updater's status; remembers the installed update it names.
    fn read_status(&self) -> Result<UpdateStatus, AgentError> {
        let mut buf = vec![0u8; MAX_STATUS_BYTES];
        let n = self
            .route
            .read(&mut buf)
            .map_err(|source| AgentError::ReadUpdaterStatus { source })?;
        let status =
            UpdateStatus::parse(&buf[..n]).ok_or(AgentError::UpdaterStatus { bytes: n })?;
        *self
            .installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = status.installed_update_id.clone();
        Ok(status)
    }

    fn last_installed(&self) -> Option<UpdateId> {
        self.installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn relay_error(
        &self,
        id: &str,
        step: &'static str,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> AgentError {
        AgentError::RelayOsUpdate {
            workflow: id.to_owned(),
            step,
            source,
        }
    }

    fn is_current(&self, goal: &Goal) -> bool {
        self.generation.load(Ordering::SeqCst) == goal.generation
    }

    fn check_current(&self, goal: &Goal) -> Result<(), Halt> {
        if self.is_current(goal) {
            Ok(())
        } else {
            Err(Halt::Superseded)
        }
    }

    /// The action of workflow `id` as taken on in this run (apply when it was not: every
    /// workflow the updater knows was staged by an apply).
    fn action_of(&self, id: &str) -> WorkflowAction {
        match &*self.taken.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(taken) if taken.id == id => taken.action,
            _ => WorkflowAction::Apply,
        }
    }

    /// Reports what `status` says (see the module docs).
    fn report_from_status(
        &self,
        agent: &AgentHandle,
        status: &UpdateStatus,
    ) -> Option<Acknowledgement> {
        let workflow = status
            .workflow
            .as_ref()
            .map(|id| (self.action_of(id), id.clone()));
        let installed = status.installed_update_id.clone();
        let (state, installed, result) = match &status.phase {
            UpdatePhase::Idle => (AgentState::Idle, installed, None),
            UpdatePhase::Applied => {
                let details = match &status.update_id {
                    Some(update) => format!(
                        "{} {} {} installed and running",
                        update.provider, update.name, update.version
                    ),
                    None => "installed and running".to_owned(),
                };
                (
                    AgentState::Idle,
                    status.update_id.clone().or(installed),
                    Some(InstallResult::applied(&details)),
                )
            }
            UpdatePhase::Failed {
                extended_result_code,
                detail,
                ..
            } => (
                AgentState::Failed,
                installed,
                Some(InstallResult {
                    result_code: FAILURE,
                    extended_result_code: *extended_result_code,
                    result_details: detail.clone(),
                }),
            ),
            UpdatePhase::Cancelled => (
                AgentState::Idle,
                installed,
                Some(InstallResult::cancelled(
                    "cancelled before it was installed",
                )),
            ),
            UpdatePhase::Downloading { .. }
            | UpdatePhase::Installing { .. }
            | UpdatePhase::Installed { .. }
            | UpdatePhase::Confirming { .. } => (AgentState::DeploymentInProgress, installed, None),
        };
        self.report(agent, state, workflow, installed, result)
    }

    /// Queues the `deviceUpdate.agent` report; the hub's acknowledgement to wait for, if it
    /// was queued.
    fn report(
        &self,
        agent: &AgentHandle,
        state: AgentState,
        workflow: Option<(WorkflowAction, String)>,
        installed_update_id: Option<UpdateId>,
        last_install_result: Option<InstallResult>,
    ) -> Option<Acknowledgement> {
        let report = AgentReport {
            state,
            workflow,
            installed_update_id,
            last_install_result,
            device_properties: self.device.clone(),
            compat_property_names: DEFAULT_COMPAT_PROPERTY_NAMES.to_owned(),
        };
        self.queue(agent, &report.reported_patch())
    }

    fn acknowledge(&self, agent: &AgentHandle, version: u64, code: u16, description: &str) {
        self.queue(agent, &acknowledgement(version, code, description));
    }

    fn queue(&self, agent: &AgentHandle, patch: &Value) -> Option<Acknowledgement> {
        match agent.queue_report(patch) {
            Ok(acknowledgement) => Some(acknowledgement),
            Err(error) => {
                self.log.line(&format!(
                    "os updates: reporting failed: {}",
                    error_chain(&error)
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;

    use testudo_os_update::result::{APPLIED, CANCELLED};
    use testudo_scheme::{Grant, NodeKind, Opened, SchemeProvider, Server};
    use testudo_testkit::nginx::{self, Nginx, Options};

    use super::*;
    use crate::dial::Dialer;
    use crate::handle::Command;
    use crate::queue::Payload;
    use crate::tls::TlsSettings;
    use crate::twin::Properties;

    const COMPATIBLE: &str = "testudo-gateway-qemu-x86_64";
    const MANIFEST: &str = "{\"manifestVersion\":\"5\",\"updateId\":{}}";
    const SIGNATURE: &str = "header.payload.signature";
    /// The name the artifact server's certificate is for.
    const HOST: &str = "artifacts.testudo.test";

    /// The updater's side of `update`, behaving as the updater does where the relay can
    /// tell: a workflow staged once (staging it again changes nothing), `staged` the staging
    /// file's length while downloading, `STAGED` opened raw for writing only then. What a
    /// stage and an install lead to is scripted per test.
    #[derive(Clone)]
    struct FakeUpdater(Arc<Mutex<Updater>>);

    struct Updater {
        requests: Vec<UpdateRequest>,
        workflow: Option<String>,
        phase: UpdatePhase,
        /// Phases the next reads move to, one per read (the last one stays).
        next: VecDeque<UpdatePhase>,
        /// What staging a new workflow leads to.
        on_stage: UpdatePhase,
        /// The phases reads move through after `install`.
        on_install: Vec<UpdatePhase>,
        /// The phases after a second `install`, when they differ from the first's.
        on_second_install: Option<Vec<UpdatePhase>>,
        /// `install` requests taken.
        installs: usize,
        /// Errnos the next `stage` requests are refused with, in turn.
        refuse_stage: VecDeque<Errno>,
        staging: PathBuf,
        /// The staging file's bytes when `install` came.
        staged_at_install: Option<Vec<u8>>,
        update_id: Option<UpdateId>,
        installed: Option<UpdateId>,
    }

    impl Updater {
        fn status(&mut self) -> UpdateStatus {
            if let Some(phase) = self.next.pop_front() {
                if matches!(phase, UpdatePhase::Downloading { .. }) {
                    // As the updater does when it wants another file: an empty staging file.
                    std::fs::File::create(&self.staging).unwrap();
                }
                self.phase = phase;
            }
            let phase = match &self.phase {
                UpdatePhase::Downloading { file_id, size, .. } => UpdatePhase::Downloading {
                    file_id: file_id.clone(),
                    size: *size,
                    staged: std::fs::metadata(&self.staging).map_or(0, |meta| meta.len()),
                },
                other => other.clone(),
            };
            UpdateStatus {
                workflow: self.workflow.clone(),
                update_id: self.update_id.clone(),
                phase,
                installed_update_id: self.installed.clone(),
                booted_slot: "A".into(),
            }
        }

        fn current(&self, workflow: &str) -> Result<(), Errno> {
            if self.workflow.as_deref() == Some(workflow) {
                Ok(())
            } else {
                Err(Errno::ESRCH)
            }
        }

        fn handle(&mut self, request: UpdateRequest) -> Result<(), Errno> {
            self.requests.push(request.clone());
            match request {
                UpdateRequest::Stage { workflow, .. } => {
                    if let Some(errno) = self.refuse_stage.pop_front() {
                        return Err(errno);
                    }
                    if self.workflow.as_ref() == Some(&workflow) {
                        return Ok(());
                    }
                    self.workflow = Some(workflow);
                    self.phase = self.on_stage.clone();
                    self.next.clear();
                    if matches!(self.phase, UpdatePhase::Downloading { .. }) {
                        std::fs::File::create(&self.staging).unwrap();
                    }
                }
                UpdateRequest::Install { workflow } => {
                    self.current(&workflow)?;
                    let UpdatePhase::Downloading { size, .. } = self.phase else {
                        return Err(Errno::EAGAIN);
                    };
                    self.staged_at_install = Some(std::fs::read(&self.staging).unwrap());
                    self.phase = UpdatePhase::Installing {
                        done: 0,
                        total: size,
                    };
                    self.installs += 1;
                    self.next = match (&self.on_second_install, self.installs) {
                        (Some(phases), 2) => phases.clone().into(),
                        _ => self.on_install.clone().into(),
                    };
                }
                UpdateRequest::Reboot { workflow } => {
                    self.current(&workflow)?;
                    if !matches!(self.phase, UpdatePhase::Installed { .. }) {
                        return Err(Errno::EAGAIN);
                    }
                }
                UpdateRequest::Cancel { workflow } => {
                    self.current(&workflow)?;
                    match self.phase {
                        UpdatePhase::Downloading { .. } => self.phase = UpdatePhase::Cancelled,
                        ref phase if phase.is_final() => {}
                        _ => return Err(Errno::EAGAIN),
                    }
                }
                UpdateRequest::Connected => {}
            }
            Ok(())
        }
    }

    impl SchemeProvider for FakeUpdater {
        type Node = ();

        fn root(&mut self, _grant: &Grant) -> std::result::Result<(), Errno> {
            Ok(())
        }

        fn open(
            &mut self,
            _parent: &(),
            path: &str,
            rights: Rights,
        ) -> std::result::Result<Opened<()>, Errno> {
            let updater = self.0.lock().unwrap();
            if path != STAGED || rights != Rights::Write {
                return Err(Errno::ENOENT);
            }
            if !matches!(updater.phase, UpdatePhase::Downloading { .. }) {
                return Err(Errno::EAGAIN);
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&updater.staging)
                .map_err(|_| Errno::EIO)?;
            Ok(Opened::Raw(OwnedFd::from(file)))
        }

        fn read(&mut self, _node: &mut (), buf: &mut [u8]) -> std::result::Result<usize, Errno> {
            let line = self.0.lock().unwrap().status().to_line();
            buf[..line.len()].copy_from_slice(line.as_bytes());
            Ok(line.len())
        }

        fn write(&mut self, _node: &mut (), data: &[u8]) -> std::result::Result<usize, Errno> {
            let request = UpdateRequest::parse(data).ok_or(Errno::EINVAL)?;
            self.0.lock().unwrap().handle(request)?;
            Ok(data.len())
        }

        fn fstat(&mut self, _node: &()) -> std::result::Result<(NodeKind, u64), Errno> {
            Ok((NodeKind::File, 0))
        }
    }

    /// A relay over a served fake updater, and a hub taking its reports.
    struct Fixture {
        relay: Arc<OsUpdateRelay>,
        agent: AgentHandle,
        updater: Arc<Mutex<Updater>>,
        patches: Arc<Mutex<Vec<Value>>>,
        _dir: tempfile::TempDir,
    }

    fn update_id(version: &str) -> UpdateId {
        UpdateId {
            provider: "testudo".into(),
            name: "gateway".into(),
            version: version.into(),
        }
    }

    fn downloading(size: usize) -> UpdatePhase {
        UpdatePhase::Downloading {
            file_id: "bundle".into(),
            size: size as u64,
            staged: 0,
        }
    }

    impl Fixture {
        /// An idle updater, changed by `setup` (which may write the staging file, at the
        /// path it is given).
        fn start(setup: impl FnOnce(&mut Updater)) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let mut updater = Updater {
                requests: Vec::new(),
                workflow: None,
                phase: UpdatePhase::Idle,
                next: VecDeque::new(),
                on_stage: UpdatePhase::Applied,
                on_install: vec![UpdatePhase::Installed { slot: "B".into() }],
                on_second_install: None,
                installs: 0,
                refuse_stage: VecDeque::new(),
                staging: dir.path().join("staged"),
                staged_at_install: None,
                update_id: Some(update_id("2.0.0")),
                installed: Some(update_id("1.0.0")),
            };
            setup(&mut updater);
            let updater = Arc::new(Mutex::new(updater));
            let mut server = Server::new(FakeUpdater(Arc::clone(&updater)));
            let route = server
                .grant(&Grant {
                    consumer: "agent".into(),
                    capability: "update".into(),
                    rights: Rights::ReadWrite,
                    allow: Vec::new(),
                })
                .unwrap();
            std::thread::spawn(move || server.run());
            // The hub: takes every report and acknowledges it.
            let (commands, mut queued) = tokio::sync::mpsc::unbounded_channel();
            let patches = Arc::new(Mutex::new(Vec::new()));
            let taken = Arc::clone(&patches);
            tokio::spawn(async move {
                while let Some(command) = queued.recv().await {
                    match command {
                        Command::Enqueue(mut item) => {
                            if let Payload::Reported(bytes) = &item.payload {
                                taken
                                    .lock()
                                    .unwrap()
                                    .push(serde_json::from_slice(bytes).unwrap());
                            }
                            if let Some(done) = item.done.take() {
                                let _ = done.send(Ok(Some(1)));
                            }
                        }
                        // What `patches` waits for: everything queued before is taken.
                        Command::Shutdown(done) => {
                            let _ = done.send(());
                        }
                        Command::RespondMethod { .. } => {}
                    }
                }
            });
            let agent = AgentHandle {
                commands,
                device_id: "gw".into(),
            };
            let relay = OsUpdateRelay::new(route, Arc::new(ComponentLog::default()), COMPATIBLE);
            Fixture {
                relay: Arc::new(relay),
                agent,
                updater,
                patches,
                _dir: dir,
            }
        }

        /// Takes `change` on and processes what it asks; whether it asked anything.
        async fn deliver(&self, fetcher: Option<&Fetcher>, change: &DesiredChange) -> bool {
            let Some(goal) = self.relay.take_desired(&self.agent, change) else {
                return false;
            };
            Arc::clone(&self.relay)
                .process(self.agent.clone(), fetcher.cloned(), goal)
                .await;
            true
        }

        fn requests(&self) -> Vec<UpdateRequest> {
            self.updater.lock().unwrap().requests.clone()
        }

        fn stages(&self) -> Vec<String> {
            self.requests()
                .into_iter()
                .filter_map(|request| match request {
                    UpdateRequest::Stage { workflow, .. } => Some(workflow),
                    _ => None,
                })
                .collect()
        }

        fn staged_at_install(&self) -> Option<Vec<u8>> {
            self.updater.lock().unwrap().staged_at_install.clone()
        }

        /// The reported patches so far, once the hub has taken everything queued.
        async fn patches(&self) -> Vec<Value> {
            let (done, taken) = tokio::sync::oneshot::channel();
            assert!(self.agent.commands.send(Command::Shutdown(done)).is_ok());
            taken.await.unwrap();
            self.patches.lock().unwrap().clone()
        }

        /// The `deviceUpdate.agent` reports so far.
        async fn agent_reports(&self) -> Vec<Value> {
            self.patches()
                .await
                .iter()
                .filter_map(|patch| patch[COMPONENT].get("agent").cloned())
                .collect()
        }

        /// The acknowledgements (`deviceUpdate.service`) so far.
        async fn acknowledgements(&self) -> Vec<Value> {
            self.patches()
                .await
                .iter()
                .filter_map(|patch| patch[COMPONENT].get("service").cloned())
                .collect()
        }
    }

    /// Desired properties asking to apply workflow `id` with `urls` as `fileUrls`.
    fn apply(id: &str, retry: Option<&str>, urls: Value) -> Properties {
        json!({
            COMPONENT: {"__t": "c", "service": {
                "workflow": {"action": 3, "id": id, "retryTimestamp": retry},
                "updateManifest": MANIFEST,
                "updateManifestSignature": SIGNATURE,
                "fileUrls": urls,
            }},
            "apps": {},
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn full(version: u64, desired: Properties) -> DesiredChange {
        DesiredChange {
            version,
            kind: ChangeKind::Full,
            patch: desired.clone(),
            desired,
        }
    }

    /// `len` bytes that differ from one `seed` to another.
    fn content(len: usize, seed: u8) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
            .collect()
    }

    /// Dials 127.0.0.1 whatever the host.
    #[derive(Debug)]
    struct LocalDialer;

    impl Dialer for LocalDialer {
        fn dial(
            &self,
            _host: &str,
            port: u16,
        ) -> std::result::Result<std::net::TcpStream, Box<dyn std::error::Error + Send + Sync>>
        {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port))?)
        }
    }

    /// A private HTTPS artifact server and the fetcher that trusts it.
    struct Artifacts {
        nginx: Nginx,
        fetcher: Fetcher,
    }

    impl Artifacts {
        fn start() -> Artifacts {
            let nginx = nginx::start(HOST, &Options::default());
            let tls = TlsSettings {
                ca_pem: nginx.ca_pem().as_bytes().to_vec(),
                client_identity: None,
            }
            .client_config(HOST)
            .unwrap();
            Artifacts {
                nginx,
                fetcher: Fetcher {
                    dialer: Arc::new(LocalDialer),
                    tls,
                },
            }
        }

        fn serve(&self, name: &str, bytes: &[u8]) {
            std::fs::write(self.nginx.root().join(name), bytes).unwrap();
        }

        /// The URL of `name`, with a SAS-like query.
        fn url(&self, name: &str) -> String {
            format!("https://{HOST}:{}/{name}?sv=1&sig=x", self.nginx.port())
        }

        /// The `Range` header of each request logged, once `count` are (`-`: none).
        fn ranges(&self, count: usize) -> Vec<String> {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while self.nginx.access_log().lines().count() < count
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.nginx
                .access_log()
                .lines()
                .map(|line| line.split(' ').nth(2).unwrap().trim_matches('"').to_owned())
                .collect()
        }
    }

    fn failed_step(report: &Value) -> Option<FailedStep> {
        FailedStep::from_extended_result_code(
            report["lastInstallResult"]["extendedResultCode"].as_i64()?,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apply_is_staged_downloaded_installed_and_rebooted_into() {
        let artifacts = Artifacts::start();
        let bundle = content(300 * 1024 + 5, 1);
        artifacts.serve("update.raucb", &bundle);
        let fixture = Fixture::start(|updater| {
            updater.on_stage = downloading(bundle.len());
            updater.on_install = vec![
                UpdatePhase::Installing {
                    done: 10,
                    total: 20,
                },
                UpdatePhase::Installed { slot: "B".into() },
            ];
        });
        let desired = apply(
            "w1",
            None,
            json!({ "bundle": artifacts.url("update.raucb") }),
        );

        assert!(
            fixture
                .deliver(Some(&artifacts.fetcher), &full(5, desired))
                .await
        );

        assert_eq!(
            fixture.requests(),
            [
                UpdateRequest::Stage {
                    workflow: "w1".into(),
                    manifest: MANIFEST.into(),
                    signature: SIGNATURE.into(),
                },
                UpdateRequest::Install {
                    workflow: "w1".into()
                },
                UpdateRequest::Reboot {
                    workflow: "w1".into()
                },
            ]
        );
        assert!(
            fixture.staged_at_install().as_deref() == Some(&bundle[..]),
            "the staging file does not hold the bundle"
        );
        assert_eq!(artifacts.ranges(1), ["-"]);
        let acknowledgements = fixture.acknowledgements().await;
        assert_eq!(acknowledgements.len(), 1, "{acknowledgements:?}");
        assert_eq!(acknowledgements[0]["ac"], ACCEPTED);
        assert_eq!(acknowledgements[0]["av"], 5);
        let reports = fixture.agent_reports().await;
        assert_eq!(reports.len(), 2, "{reports:?}");
        for report in &reports {
            assert_eq!(report["state"], 6, "{report}");
            assert_eq!(report["workflow"], json!({"action": 3, "id": "w1"}));
            assert_eq!(report["lastInstallResult"], Value::Null);
            assert_eq!(
                report["installedUpdateId"],
                update_id("1.0.0").to_json_string()
            );
            assert_eq!(report["compatPropertyNames"], "manufacturer,model");
            assert_eq!(
                report["deviceProperties"],
                json!({
                    "manufacturer": "testudo",
                    "model": COMPATIBLE,
                    "contractModelId": "dtmi:azure:iot:deviceUpdateContractModel;3",
                    "aduVer": "DU;agent/1.0.0",
                })
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_delta_that_did_not_install_the_file_the_updater_names_is_downloaded() {
        let artifacts = Artifacts::start();
        let delta = content(20 * 1024 + 3, 4);
        let bundle = content(300 * 1024 + 5, 5);
        artifacts.serve("delta.raucb", &delta);
        artifacts.serve("update.raucb", &bundle);
        let fixture = Fixture::start(|updater| {
            updater.on_stage = UpdatePhase::Downloading {
                file_id: "delta-1".into(),
                size: delta.len() as u64,
                staged: 0,
            };
            // The delta's install fails where the full bundle may not: the updater wants the
            // bundle instead; a third wish for the same file would be an error.
            updater.on_install = vec![downloading(bundle.len())];
            updater.on_second_install = Some(vec![UpdatePhase::Installed { slot: "B".into() }]);
        });
        let desired = apply(
            "w1",
            None,
            json!({
                "bundle": artifacts.url("update.raucb"),
                "delta-1": artifacts.url("delta.raucb"),
            }),
        );
        assert!(
            fixture
                .deliver(Some(&artifacts.fetcher), &full(5, desired))
                .await
        );
        let install = UpdateRequest::Install {
            workflow: "w1".into(),
        };
        assert_eq!(
            fixture.requests()[1..],
            [
                install.clone(),
                install,
                UpdateRequest::Reboot {
                    workflow: "w1".into()
                }
            ]
        );
        assert!(
            fixture.staged_at_install().as_deref() == Some(&bundle[..]),
            "the second install did not find the full bundle staged"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_resumes_at_the_staged_bytes() {
        let artifacts = Artifacts::start();
        let bundle = content(256 * 1024, 2);
        artifacts.serve("update.raucb", &bundle);
        let staged = 100_000;
        // A previous run staged the workflow and part of the bundle.
        let fixture = Fixture::start(|updater| {
            updater.workflow = Some("w1".into());
            updater.phase = downloading(bundle.len());
            std::fs::write(&updater.staging, &bundle[..staged]).unwrap();
        });
        let desired = apply(
            "w1",
            None,
            json!({ "bundle": artifacts.url("update.raucb") }),
        );

        assert!(
            fixture
                .deliver(Some(&artifacts.fetcher), &full(9, desired))
                .await
        );

        assert_eq!(artifacts.ranges(1), [format!("bytes={staged}-")]);
        assert!(
            fixture.staged_at_install().as_deref() == Some(&bundle[..]),
            "the staging file does not hold the bundle"
        );
        assert!(fixture.requests().contains(&UpdateRequest::Reboot {
            workflow: "w1".into()
        }));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_download_keeps_the_staged_bytes_and_a_retry_resumes_from_them() {
        let artifacts = Artifacts::start();
        let bundle = content(200 * 1024, 3);
        let staged = 50_000;
        let fixture = Fixture::start(|updater| {
            updater.workflow = Some("w1".into());
            updater.phase = downloading(bundle.len());
            std::fs::write(&updater.staging, &bundle[..staged]).unwrap();
        });
        let urls = json!({ "bundle": artifacts.url("update.raucb") });

        // Not on the server yet: 404.
        assert!(
            fixture
                .deliver(
                    Some(&artifacts.fetcher),
                    &full(1, apply("w1", None, urls.clone()))
                )
                .await
        );
        let reports = fixture.agent_reports().await;
        let last = reports.last().unwrap();
        assert_eq!(last["state"], 255, "{last}");
        assert_eq!(failed_step(last), Some(FailedStep::Download), "{last}");
        let details = last["lastInstallResult"]["resultDetails"].as_str().unwrap();
        assert!(details.contains("404"), "{details}");
        let staging = fixture.updater.lock().unwrap().staging.clone();
        assert_eq!(std::fs::read(&staging).unwrap(), &bundle[..staged]);
        assert_eq!(fixture.staged_at_install(), None);

        artifacts.serve("update.raucb", &bundle);
        // The same delivery again is not a retry.
        assert!(
            !fixture
                .deliver(
                    Some(&artifacts.fetcher),
                    &full(2, apply("w1", None, urls.clone()))
                )
                .await
        );
        // ADU's retry: the same workflow with a retryTimestamp.
        assert!(
            fixture
                .deliver(
                    Some(&artifacts.fetcher),
                    &full(3, apply("w1", Some("2026-12-04T10:00:00Z"), urls))
                )
                .await
        );
        assert!(
            fixture.staged_at_install().as_deref() == Some(&bundle[..]),
            "the staging file does not hold the bundle"
        );
        assert_eq!(artifacts.ranges(2)[1], format!("bytes={staged}-"));
        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["state"], 6, "{last}");
    }

    #[tokio::test]
    async fn a_file_the_urls_do_not_name_fails_the_download_step() {
        let fixture = Fixture::start(|updater| updater.on_stage = downloading(10));
        let desired = apply("w1", None, json!({ "other": "https://h.invalid/x" }));

        assert!(fixture.deliver(None, &full(1, desired)).await);

        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["state"], 255);
        assert_eq!(failed_step(&last), Some(FailedStep::Download), "{last}");
        let details = last["lastInstallResult"]["resultDetails"].as_str().unwrap();
        assert!(details.contains("\"bundle\""), "{details}");
        assert_eq!(fixture.stages(), ["w1"]);
        assert_eq!(fixture.staged_at_install(), None);
    }

    #[tokio::test]
    async fn a_workflow_is_staged_once_per_run_and_a_new_id_is_staged_again() {
        // Already installed: the updater ends the workflow at stage.
        let fixture = Fixture::start(|updater| updater.on_stage = UpdatePhase::Applied);
        let urls = json!({ "bundle": "https://h.invalid/u.raucb" });

        assert!(
            fixture
                .deliver(None, &full(1, apply("w1", None, urls.clone())))
                .await
        );
        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["state"], 0);
        assert_eq!(last["lastInstallResult"]["resultCode"], APPLIED);
        assert_eq!(
            last["installedUpdateId"],
            update_id("2.0.0").to_json_string()
        );
        assert_eq!(last["workflow"], json!({"action": 3, "id": "w1"}));

        // Redelivered (a full twin after a reconnect, a patch of something else).
        assert!(
            !fixture
                .deliver(None, &full(2, apply("w1", None, urls.clone())))
                .await
        );
        let patch = DesiredChange {
            version: 3,
            kind: ChangeKind::Patch,
            patch: json!({"apps": {}}).as_object().unwrap().clone(),
            desired: apply("w1", None, urls.clone()),
        };
        assert!(!fixture.deliver(None, &patch).await);
        assert_eq!(fixture.stages(), ["w1"]);
        let acknowledgements = fixture.acknowledgements().await;
        assert_eq!(
            acknowledgements.len(),
            2,
            "the patch of apps is not acknowledged"
        );
        assert_eq!(acknowledgements[1]["ac"], ACCEPTED);
        assert_eq!(acknowledgements[1]["av"], 2);

        assert!(
            fixture
                .deliver(None, &full(4, apply("w2", None, urls)))
                .await
        );
        assert_eq!(fixture.stages(), ["w1", "w2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_updater_is_asked_to_stage_again() {
        let fixture = Fixture::start(|updater| {
            updater.refuse_stage = [Errno::EBUSY, Errno::EBUSY].into();
        });
        let urls = json!({ "bundle": "https://h.invalid/u.raucb" });

        assert!(
            fixture
                .deliver(None, &full(1, apply("w1", None, urls)))
                .await
        );

        assert_eq!(fixture.stages(), ["w1", "w1", "w1"]);
        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["lastInstallResult"]["resultCode"], APPLIED, "{last}");
    }

    #[tokio::test]
    async fn a_failure_the_updater_decides_is_reported_with_its_code() {
        let fixture = Fixture::start(|updater| {
            updater.on_stage = UpdatePhase::Failed {
                step: "manifest_signature".into(),
                extended_result_code: FailedStep::ManifestSignature.extended_result_code(),
                detail: "signed by no known root key".into(),
            };
        });
        let urls = json!({ "bundle": "https://h.invalid/u.raucb" });

        assert!(
            fixture
                .deliver(None, &full(1, apply("w1", None, urls)))
                .await
        );

        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["state"], 255);
        assert_eq!(last["lastInstallResult"]["resultCode"], FAILURE);
        assert_eq!(
            last["lastInstallResult"]["extendedResultCode"],
            0x3000_0001_i64
        );
        assert_eq!(
            last["lastInstallResult"]["resultDetails"],
            "signed by no known root key"
        );
        assert_eq!(last["workflow"], json!({"action": 3, "id": "w1"}));
        assert_eq!(fixture.stages(), ["w1"]);
        assert_eq!(fixture.requests().len(), 1, "nothing after the failure");
    }

    #[tokio::test]
    async fn a_failed_install_is_reported_and_not_rebooted_into() {
        let bundle = content(1000, 4);
        // The whole bundle is staged already: no download.
        let fixture = Fixture::start(|updater| {
            updater.workflow = Some("w1".into());
            updater.phase = downloading(bundle.len());
            std::fs::write(&updater.staging, &bundle).unwrap();
            updater.on_install = vec![UpdatePhase::Failed {
                step: "file_hash".into(),
                extended_result_code: FailedStep::FileHash.extended_result_code(),
                detail: "sha256 differs".into(),
            }];
        });
        let urls = json!({ "bundle": "https://h.invalid/u.raucb" });

        assert!(
            fixture
                .deliver(None, &full(1, apply("w1", None, urls)))
                .await
        );

        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["state"], 255);
        assert_eq!(failed_step(&last), Some(FailedStep::FileHash));
        assert!(!fixture
            .requests()
            .iter()
            .any(|request| matches!(request, UpdateRequest::Reboot { .. })));
    }

    #[tokio::test]
    async fn a_cancel_is_relayed_and_reported_cancelled() {
        let fixture = Fixture::start(|updater| {
            updater.workflow = Some("w1".into());
            updater.phase = downloading(1000);
        });
        let cancel = |id: &str| {
            json!({ COMPONENT: {"__t": "c", "service": {"workflow": {"action": 255, "id": id}}}})
                .as_object()
                .unwrap()
                .clone()
        };

        assert!(fixture.deliver(None, &full(2, cancel("w1"))).await);

        assert_eq!(
            fixture.requests(),
            [UpdateRequest::Cancel {
                workflow: "w1".into()
            }]
        );
        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["state"], 0);
        assert_eq!(last["lastInstallResult"]["resultCode"], CANCELLED);
        assert_eq!(last["workflow"], json!({"action": 255, "id": "w1"}));
        assert_eq!(
            fixture.updater.lock().unwrap().phase,
            UpdatePhase::Cancelled
        );

        // A workflow the updater does not have: nothing of it runs, it is cancelled too.
        assert!(fixture.deliver(None, &full(3, cancel("w9"))).await);
        let last = fixture.agent_reports().await.pop().unwrap();
        assert_eq!(last["state"], 0);
        assert_eq!(last["lastInstallResult"]["resultCode"], CANCELLED);
        assert_eq!(last["workflow"], json!({"action": 255, "id": "w9"}));
    }

    #[tokio::test]
    async fn a_malformed_device_update_is_rejected_and_nothing_is_relayed() {
        let fixture = Fixture::start(|_| {});
        let desired = json!({ COMPONENT: {"__t": "c", "service": {"workflow": 3}} })
            .as_object()
            .unwrap()
            .clone();

        assert!(!fixture.deliver(None, &full(4, desired)).await);
        // An apply without its manifest is refused the same way.
        let mut bare = apply("w1", None, json!({}));
        bare[COMPONENT]["service"]["updateManifest"] = Value::Null;
        assert!(!fixture.deliver(None, &full(5, bare)).await);

        let acknowledgements = fixture.acknowledgements().await;
        assert_eq!(acknowledgements.len(), 2, "{acknowledgements:?}");
        assert_eq!(acknowledgements[0]["ac"], REJECTED);
        assert_eq!(acknowledgements[0]["av"], 4);
        let why = acknowledgements[0]["ad"].as_str().unwrap();
        assert!(why.contains("workflow"), "{why}");
        assert_eq!(acknowledgements[1]["ac"], REJECTED);
        assert!(fixture.requests().is_empty());
        assert!(fixture.agent_reports().await.is_empty());
    }

    #[tokio::test]
    async fn after_a_reboot_the_applied_update_is_reported() {
        let fixture = Fixture::start(|updater| {
            updater.workflow = Some("w1".into());
            updater.phase = UpdatePhase::Applied;
            updater.installed = Some(update_id("2.0.0"));
        });

        Arc::clone(&fixture.relay)
            .report_status(fixture.agent.clone())
            .await;

        let reports = fixture.agent_reports().await;
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0]["state"], 0);
        assert_eq!(reports[0]["lastInstallResult"]["resultCode"], APPLIED);
        assert_eq!(reports[0]["lastInstallResult"]["extendedResultCode"], 0);
        assert_eq!(
            reports[0]["installedUpdateId"],
            "{\"provider\":\"testudo\",\"name\":\"gateway\",\"version\":\"2.0.0\"}"
        );
        assert_eq!(reports[0]["workflow"], json!({"action": 3, "id": "w1"}));
        assert_eq!(reports[0]["deviceProperties"]["model"], COMPATIBLE);

        // The full twin then delivers the workflow again: reported as applied, not started.
        let urls = json!({ "bundle": "https://h.invalid/u.raucb" });
        assert!(
            fixture
                .deliver(None, &full(7, apply("w1", None, urls)))
                .await
        );
        let reports = fixture.agent_reports().await;
        assert_eq!(reports.len(), 2, "no state 6 before: {reports:?}");
        assert_eq!(reports[1]["lastInstallResult"]["resultCode"], APPLIED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_on_trial_is_reported_in_progress_until_it_is_confirmed() {
        let fixture = Fixture::start(|updater| {
            updater.workflow = Some("w1".into());
            updater.phase = UpdatePhase::Confirming { slot: "B".into() };
            updater.next = [
                UpdatePhase::Confirming { slot: "B".into() },
                UpdatePhase::Confirming { slot: "B".into() },
                UpdatePhase::Applied,
            ]
            .into();
        });

        Arc::clone(&fixture.relay)
            .report_status(fixture.agent.clone())
            .await;

        let reports = fixture.agent_reports().await;
        let states: Vec<&Value> = reports.iter().map(|report| &report["state"]).collect();
        assert_eq!(states, [6, 0], "{reports:?}");
        assert_eq!(reports[1]["lastInstallResult"]["resultCode"], APPLIED);
    }

    #[tokio::test]
    async fn the_updater_is_told_of_the_first_connection_of_a_run_only() {
        let fixture = Fixture::start(|_| {});
        fixture.relay.connected();
        fixture.relay.connected();
        assert_eq!(fixture.requests(), [UpdateRequest::Connected]);
    }
}
