//! The `update` capability (`testudo_plan::interfaces::UPDATE`) the updater serves to the
//! component relaying OS updates from the cloud. Each `write` on the root handle is one
//! [`UpdateRequest`]; each `read` returns the [`UpdateStatus`]; `open_raw(STAGED, Write)`
//! gives a write-only descriptor of the staging file while a download is wanted. The install
//! runs on a thread of its own, so the relay can read progress meanwhile.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use testudo_os_update::update_scheme::{UpdateRequest, UpdateStatus, STAGED};
use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

use crate::workflow::{RequestRefused, Updates};
use crate::UpdateServiceError;

/// What the updater needs to act on a request besides the workflow state.
pub trait PowerControl: Send + Sync {
    /// Asks init to reboot the device.
    fn reboot(&self) -> Result<(), UpdateServiceError>;
}

/// The OS update state, shared by the scheme, the install thread and the confirmation.
pub type SharedUpdates = Arc<Mutex<Updates>>;

/// Locks `updates` (a panic elsewhere does not make the state unusable).
pub fn lock(updates: &SharedUpdates) -> MutexGuard<'_, Updates> {
    updates.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves `update`.
pub struct UpdateProvider {
    updates: SharedUpdates,
    power: Arc<dyn PowerControl>,
    connected: Arc<AtomicBool>,
    say: Arc<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for UpdateProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateProvider").finish_non_exhaustive()
    }
}

/// A handle of the capability: only the root.
#[derive(Debug, Clone)]
pub struct UpdateNode;

impl UpdateProvider {
    /// A provider over `updates`; `connected` is set when the relay says it reached the
    /// cloud; `say` writes a line to the log.
    pub fn new(
        updates: SharedUpdates,
        power: Arc<dyn PowerControl>,
        connected: Arc<AtomicBool>,
        say: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> UpdateProvider {
        UpdateProvider {
            updates,
            power,
            connected,
            say,
        }
    }

    /// Acts on one request.
    fn handle(&mut self, request: UpdateRequest) -> Result<(), UpdateServiceError> {
        match request {
            UpdateRequest::Stage {
                workflow,
                manifest,
                signature,
            } => {
                let mut updates = lock(&self.updates);
                updates.stage(&workflow, &manifest, &signature)?;
                let status = updates.status();
                drop(updates);
                (self.say)(&format!("workflow {workflow}: {}", describe(&status)));
                Ok(())
            }
            UpdateRequest::Install { workflow } => {
                let job = lock(&self.updates).begin_install(&workflow)?;
                (self.say)(&format!(
                    "workflow {workflow}: verifying the staged bundle and installing it into slot {}",
                    job.target
                ));
                let updates = Arc::clone(&self.updates);
                let say = Arc::clone(&self.say);
                std::thread::Builder::new()
                    .stack_size(crate::service::THREAD_STACK)
                    .spawn(move || {
                        let progress_updates = Arc::clone(&updates);
                        let mut progress = move |done, total| {
                            lock(&progress_updates).set_progress(done, total);
                        };
                        let outcome = job.verify(&mut progress).and_then(|verified| {
                            say(&format!(
                                "workflow {workflow}: bundle verified (file sha256, CMS signature, verity); writing slot {}",
                                verified.target()
                            ));
                            verified.install(&mut progress)
                        });
                        let mut state = lock(&updates);
                        match state.finish_install(&workflow, outcome) {
                            Ok(Some(delta_failure)) => say(&format!(
                                "workflow {workflow}: the delta bundle did not install ({}: {}); the full bundle is wanted instead",
                                delta_failure.step.name(),
                                delta_failure.detail
                            )),
                            Ok(None) => {}
                            Err(error) => say(&format!(
                                "workflow {workflow}: {}",
                                testudo_error_chain::error_chain(&error)
                            )),
                        }
                        // Said under the lock: before a reboot request (which takes it) can
                        // end the process.
                        say(&format!("workflow {workflow}: {}", describe(&state.status())));
                        drop(state);
                    })
                    .map_err(|source| UpdateServiceError::Thread { source })?;
                Ok(())
            }
            UpdateRequest::Reboot { workflow } => {
                lock(&self.updates).reboot(&workflow)?;
                (self.say)(&format!(
                    "workflow {workflow}: installed; rebooting into it"
                ));
                self.power.reboot()
            }
            UpdateRequest::Cancel { workflow } => {
                lock(&self.updates).cancel(&workflow)?;
                (self.say)(&format!("workflow {workflow}: cancelled"));
                Ok(())
            }
            UpdateRequest::Connected => {
                if !self.connected.swap(true, Ordering::SeqCst) {
                    (self.say)("the relay reached the cloud");
                }
                Ok(())
            }
        }
    }
}

/// One line about a status, for the log.
pub fn describe(status: &UpdateStatus) -> String {
    use testudo_os_update::update_scheme::UpdatePhase;
    match &status.phase {
        UpdatePhase::Idle => "idle".to_owned(),
        UpdatePhase::Downloading {
            file_id,
            size,
            staged,
        } => {
            format!("manifest verified; downloading {file_id} ({staged} of {size} bytes staged)")
        }
        UpdatePhase::Installing { done, total } => format!("installing ({done} of {total})"),
        UpdatePhase::Installed { slot } => format!("installed into slot {slot}, reboot pending"),
        UpdatePhase::Confirming { slot } => format!("slot {slot} booted on trial"),
        UpdatePhase::Applied => "applied".to_owned(),
        UpdatePhase::Failed { step, detail, .. } => format!("failed at {step}: {detail}"),
        UpdatePhase::Cancelled => "cancelled".to_owned(),
    }
}

/// The errno a refused request answers with.
fn errno(error: &UpdateServiceError) -> Errno {
    match error {
        UpdateServiceError::Refused(RequestRefused::NotCurrent { .. }) => Errno::ESRCH,
        UpdateServiceError::Refused(RequestRefused::WrongPhase { .. }) => Errno::EAGAIN,
        UpdateServiceError::Refused(RequestRefused::Busy { .. }) => Errno::EBUSY,
        _ => Errno::EIO,
    }
}

impl SchemeProvider for UpdateProvider {
    type Node = UpdateNode;

    fn root(&mut self, _grant: &Grant) -> Result<UpdateNode, Errno> {
        Ok(UpdateNode)
    }

    fn open(
        &mut self,
        _parent: &UpdateNode,
        path: &str,
        rights: Rights,
    ) -> Result<Opened<UpdateNode>, Errno> {
        if path != STAGED || rights != Rights::Write {
            return Err(Errno::ENOENT);
        }
        let file = lock(&self.updates)
            .staging_file()
            .map_err(|_| Errno::EAGAIN)?;
        Ok(Opened::Raw(OwnedFd::from(file)))
    }

    fn read(&mut self, _node: &mut UpdateNode, buf: &mut [u8]) -> Result<usize, Errno> {
        let line = lock(&self.updates).status().to_line();
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line.as_bytes()[..n]);
        Ok(n)
    }

    fn write(&mut self, _node: &mut UpdateNode, data: &[u8]) -> Result<usize, Errno> {
        let request = UpdateRequest::parse(data).ok_or(Errno::EINVAL)?;
        match self.handle(request) {
            Ok(()) => Ok(data.len()),
            Err(error) => {
                (self.say)(&format!(
                    "request refused: {}",
                    testudo_error_chain::error_chain(&error)
                ));
                Err(errno(&error))
            }
        }
    }

    fn fstat(&mut self, _node: &UpdateNode) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::File, 0))
    }
}
