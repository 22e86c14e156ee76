//! The `deployment` capability init serves (`testudo_plan::interfaces::DEPLOYMENT`): the
//! component that relays deployment tokens from the cloud (the agent) writes a token into a
//! session for a slot, and init — which owns the slots — verifies it before anything
//! happens, asks for the module only once the token is trusted, checks the module's size
//! and hash as it arrives, keeps it beside the slot's current app ([`crate::slots`]) and
//! hands the switch to the supervisor. The relay decides nothing: it writes what it got and
//! reads what init did ([`SessionState`]).
//!
//! Reading the root handle returns every slot's report (`{"<slot>": SlotReport}` and a
//! newline), as the supervisor last published it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use testudo_deployment::twin::SlotReport;
use testudo_deployment::{
    check_against_device, Action, Deployment, ModuleHasher, SessionState, VerifiedDeployment,
};
use testudo_error_chain::error_chain;
use testudo_plan::AppSlot;
use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights};

use crate::slots::{Installed, SlotStore};
use crate::InitError;

/// A session's state, shared by the scheme (which the relay reads) and the supervisor
/// (which moves it on as it switches the slot).
pub type SharedSession = Arc<Mutex<SessionState>>;

/// Sets a shared session's state.
pub fn set_state(session: &SharedSession, state: SessionState) {
    *session.lock().unwrap_or_else(PoisonError::into_inner) = state;
}

/// What the supervisor is asked to do with a slot.
#[derive(Debug)]
pub struct SlotSwitch {
    /// The slot.
    pub slot: String,
    /// The verified deployment, its module in place (a removal has none).
    pub installed: Installed,
    /// The session to move on.
    pub session: SharedSession,
}

/// Switches waiting for the supervisor, and the pipe that wakes it.
#[derive(Debug, Clone)]
pub struct SwitchQueue {
    pending: Arc<Mutex<Vec<SlotSwitch>>>,
    wake: Arc<OwnedFd>,
}

impl SwitchQueue {
    /// A queue and the fd that becomes readable when a switch is queued.
    pub fn new() -> Result<(SwitchQueue, OwnedFd), InitError> {
        let (read, write) = std::io::pipe().map_err(|source| InitError::Kernel {
            step: "creating the slot switch pipe",
            source,
        })?;
        Ok((
            SwitchQueue {
                pending: Arc::new(Mutex::new(Vec::new())),
                wake: Arc::new(OwnedFd::from(write)),
            },
            OwnedFd::from(read),
        ))
    }

    /// Queues `switch` and wakes the supervisor.
    pub fn push(&self, switch: SlotSwitch) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(switch);
        let byte = 1u8;
        // SAFETY: writes one byte from a local to the pipe's write end, which `self` owns.
        unsafe { libc::write(self.wake.as_raw_fd(), (&byte as *const u8).cast(), 1) };
    }

    /// Takes every queued switch, in order.
    pub fn take(&self) -> Vec<SlotSwitch> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Every slot's report, as the supervisor publishes it.
pub type SlotReports = Arc<Mutex<BTreeMap<String, SlotReport>>>;

/// A module arriving for a session.
#[derive(Debug)]
struct Staging {
    file: std::fs::File,
    path: PathBuf,
    hasher: ModuleHasher,
    installed: Installed,
}

/// One deployment session.
#[derive(Debug)]
pub struct Session {
    slot: String,
    shared: SharedSession,
    staging: Option<Staging>,
}

impl Drop for Session {
    /// A module that never completed is not kept.
    fn drop(&mut self) {
        if let Some(staging) = self.staging.take() {
            let _ = std::fs::remove_file(&staging.path);
        }
    }
}

/// A handle to the `deployment` capability (a duplicated session handle shares its session).
#[derive(Debug, Clone)]
pub enum DeploymentNode {
    /// The root: reads the slots' reports.
    Root {
        /// The report being read, and how far.
        pending: Vec<u8>,
        /// Whether a report is being read.
        started: bool,
    },
    /// A session for one slot.
    Session(Arc<Mutex<Session>>),
}

/// Serves `deployment`.
#[derive(Debug)]
pub struct DeploymentService {
    slots: BTreeMap<String, AppSlot>,
    store: Arc<Mutex<SlotStore>>,
    switches: SwitchQueue,
    reports: SlotReports,
    sessions: u64,
}

impl DeploymentService {
    /// Serves the plan's `slots` from `store`, queueing switches on `switches`; the root
    /// handle reads `reports`.
    pub fn new(
        slots: BTreeMap<String, AppSlot>,
        store: Arc<Mutex<SlotStore>>,
        switches: SwitchQueue,
        reports: SlotReports,
    ) -> DeploymentService {
        DeploymentService {
            slots,
            store,
            switches,
            reports,
            sessions: 0,
        }
    }

    /// The root handle of a grant.
    pub fn root(&mut self, _grant: &Grant) -> DeploymentNode {
        DeploymentNode::Root {
            pending: Vec::new(),
            started: false,
        }
    }

    /// Opens a session for the slot `path`.
    pub fn open(
        &mut self,
        parent: &DeploymentNode,
        path: &str,
        rights: Rights,
    ) -> Result<Opened<DeploymentNode>, Errno> {
        if !matches!(parent, DeploymentNode::Root { .. }) {
            return Err(Errno::ENOTDIR);
        }
        if rights != Rights::ReadWrite {
            return Err(Errno::EACCES);
        }
        if !self.slots.contains_key(path) {
            return Err(Errno::ENOENT);
        }
        self.sessions += 1;
        Ok(Opened::Node(DeploymentNode::Session(Arc::new(Mutex::new(
            Session {
                slot: path.to_owned(),
                shared: Arc::new(Mutex::new(SessionState::Idle)),
                staging: None,
            },
        )))))
    }

    /// Reads the slots' reports (root) or the session's state.
    pub fn read(&mut self, node: &mut DeploymentNode, buf: &mut [u8]) -> Result<usize, Errno> {
        match node {
            DeploymentNode::Root { pending, started } => {
                if !*started {
                    let reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
                    *pending = serde_json::to_vec(&*reports).map_err(|_| Errno::EIO)?;
                    pending.push(b'\n');
                    *started = true;
                }
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                pending.drain(..n);
                if n == 0 {
                    *started = false;
                }
                Ok(n)
            }
            DeploymentNode::Session(session) => {
                let session = session.lock().unwrap_or_else(PoisonError::into_inner);
                let line = session
                    .shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .to_line();
                let n = line.len().min(buf.len());
                buf[..n].copy_from_slice(&line[..n]);
                Ok(n)
            }
        }
    }

    /// The token (first write of a session) or the module's next bytes.
    pub fn write(&mut self, node: &mut DeploymentNode, data: &[u8]) -> Result<usize, Errno> {
        let DeploymentNode::Session(session) = node else {
            return Err(Errno::EBADF);
        };
        let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
        let session = &mut *session;
        let state = session
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match state {
            SessionState::Idle => {
                let next = self.take_token(session, data);
                set_state(&session.shared, next);
                Ok(data.len())
            }
            SessionState::WantsModule { .. } => self.take_module_bytes(session, data),
            _ => Err(Errno::EBADF),
        }
    }

    /// `fsync` of a session: the module is complete; check it, keep it, switch.
    pub fn fsync(&mut self, node: &mut DeploymentNode) -> Result<(), Errno> {
        let DeploymentNode::Session(session) = node else {
            return Ok(());
        };
        let mut session = session.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(staging) = session.staging.take() else {
            return Err(Errno::EINVAL);
        };
        let next = self.finish_module(&session.slot, staging, &session.shared);
        set_state(&session.shared, next);
        Ok(())
    }

    /// What a session's token leads to.
    fn take_token(&mut self, session: &mut Session, data: &[u8]) -> SessionState {
        let refused = |description: String| SessionState::Refused {
            code: 400,
            description,
        };
        let Ok(token) = std::str::from_utf8(data) else {
            return refused("the deployment token is not UTF-8".to_owned());
        };
        let token = token.trim_end();
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let verified = match testudo_deployment::verify(token, store.keys()) {
            Ok(verified) => verified,
            Err(error) => return refused(error_chain(&error)),
        };
        let slot = session.slot.as_str();
        if verified.deployment().slot != slot {
            return refused(format!(
                "the token is for app slot {}, it was written to app slot {slot}",
                verified.deployment().slot
            ));
        }
        let file = store.file(slot).cloned().unwrap_or_default();
        if file.current.as_deref() == Some(token)
            || (verified.deployment().is_removal()
                && file.removed
                && file.installed_serial == Some(verified.deployment().serial))
        {
            return SessionState::Unchanged {
                serial: verified.deployment().serial,
            };
        }
        // The installed serial's token again after its deployment was rolled back: the same
        // answer as then.
        if file.installed_serial == Some(verified.deployment().serial) {
            if let Some(why) = &file.rolled_back {
                return SessionState::RolledBack {
                    code: 500,
                    description: why.clone(),
                };
            }
        }
        if let Err(error) = check_against_device(
            &verified,
            self.slots.get(slot),
            store.compatible(),
            file.installed_serial,
        ) {
            return refused(error_chain(&error));
        }
        let installed = Installed {
            token: token.to_owned(),
            deployment: verified.deployment().clone(),
        };
        let serial = installed.deployment.serial;
        let wanted =
            module_wanted(&verified).filter(|(sha256, _, _)| !store.has_module(slot, sha256));
        let Some((sha256, size, url)) = wanted else {
            drop(store);
            self.switches.push(SlotSwitch {
                slot: slot.to_owned(),
                installed,
                session: Arc::clone(&session.shared),
            });
            return SessionState::Applying { serial };
        };
        let Some(url) = url else {
            return refused(format!(
                "serial {serial} names no URL and its module {sha256} is not on the device"
            ));
        };
        let dir = store.slot_dir(slot);
        let path = dir.join(format!(".{sha256}.{}.part", self.sessions));
        let file = std::fs::create_dir_all(&dir).and_then(|()| std::fs::File::create(&path));
        match file {
            Ok(file) => {
                session.staging = Some(Staging {
                    file,
                    path,
                    hasher: ModuleHasher::new(),
                    installed,
                });
                SessionState::WantsModule { url, size, sha256 }
            }
            Err(error) => SessionState::RolledBack {
                code: 500,
                description: format!("creating {}: {error}", path.display()),
            },
        }
    }

    /// The module's next bytes: written beside the slot's modules, hashed, never beyond the
    /// size the document names.
    fn take_module_bytes(&mut self, session: &mut Session, data: &[u8]) -> Result<usize, Errno> {
        let Some(staging) = session.staging.as_mut() else {
            return Err(Errno::EBADF);
        };
        let app = match &staging.installed.deployment.action {
            Action::Deploy(release) => release.app.clone(),
            Action::Remove => return Err(Errno::EBADF),
        };
        if staging.hasher.size().saturating_add(data.len() as u64) > app.size {
            let staging = session.staging.take();
            if let Some(staging) = staging {
                let _ = std::fs::remove_file(&staging.path);
            }
            set_state(
                &session.shared,
                SessionState::Refused {
                    code: 400,
                    description: format!(
                        "module of {} {} is longer than the {} bytes its deployment names",
                        app.name, app.version, app.size
                    ),
                },
            );
            return Err(Errno::EFBIG);
        }
        staging.file.write_all(data).map_err(|_| Errno::EIO)?;
        staging.hasher.update(data);
        Ok(data.len())
    }

    /// Checks a complete module, puts it in place and queues the switch.
    fn finish_module(
        &mut self,
        slot: &str,
        staging: Staging,
        shared: &SharedSession,
    ) -> SessionState {
        let Staging {
            file,
            path,
            hasher,
            installed,
        } = staging;
        let Action::Deploy(release) = &installed.deployment.action else {
            return SessionState::Idle;
        };
        if let Err(error) = release.app.check_digest(&hasher.finish()) {
            let _ = std::fs::remove_file(&path);
            return SessionState::Refused {
                code: 400,
                description: error_chain(&error),
            };
        }
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let target = store.module_path(slot, &release.app.sha256);
        let kept = file
            .sync_all()
            .and_then(|()| std::fs::rename(&path, &target))
            .and_then(|()| std::fs::File::open(store.slot_dir(slot))?.sync_all());
        drop(store);
        if let Err(error) = kept {
            let _ = std::fs::remove_file(&path);
            return SessionState::RolledBack {
                code: 500,
                description: format!("keeping the module as {}: {error}", target.display()),
            };
        }
        let serial = installed.deployment.serial;
        self.switches.push(SlotSwitch {
            slot: slot.to_owned(),
            installed,
            session: Arc::clone(shared),
        });
        SessionState::Applying { serial }
    }

    /// What a handle is.
    pub fn fstat(&mut self, node: &DeploymentNode) -> Result<(NodeKind, u64), Errno> {
        match node {
            DeploymentNode::Root { .. } => Ok((NodeKind::Directory, 0)),
            DeploymentNode::Session(_) => Ok((NodeKind::Stream, 0)),
        }
    }
}

/// The module a verified deployment needs: (sha256, size, URL); `None` for a removal.
fn module_wanted(verified: &VerifiedDeployment) -> Option<(String, u64, Option<String>)> {
    let deployment: &Deployment = verified.deployment();
    match &deployment.action {
        Action::Deploy(release) => Some((
            release.app.sha256.clone(),
            release.app.size,
            release.url.clone(),
        )),
        Action::Remove => None,
    }
}
