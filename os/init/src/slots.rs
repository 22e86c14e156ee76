//! The app slots' deployments on the data partition: what init installed in each slot, kept
//! so that a new app is written beside the old one, switched to once, and the old one kept
//! until the new one proved healthy.
//!
//! Per slot, under `testudo_plan::layout::slots_dir` (`<data>/.init/slots/<slot>/`):
//! - `<sha256>.wasm`: the modules of the current and the previous deployment (written as a
//!   hidden `.part` file, synced, then renamed into place);
//! - `state.json`: the installed serial, the current and previous signed tokens, and whether
//!   the current one is still on trial (its health check not yet passed). Replaced
//!   atomically (temp file, fsync, rename, directory fsync): after a power cut it is old or
//!   new, whole.
//!
//! Every token read back is verified again, as at first ([`testudo_deployment::verify`] and
//! the module's hash): the data partition is writable by more than init. A slot whose state
//! cannot be trusted falls back to its factory app, and says why.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use testudo_deployment::{Action, AppRelease, Deployment, ModuleHasher, VerifyingKey};
use testudo_plan::Plan;

use crate::error::SlotError;

/// The state file of a slot.
pub const STATE_FILE: &str = "state.json";

/// Most bytes of a state file read back (two tokens and a little more).
const MAX_STATE_FILE: u64 = 4 * testudo_deployment::MAX_TOKEN_BYTES as u64;

/// What `state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotFile {
    /// The serial of the last deployment or removal accepted into the slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_serial: Option<u64>,
    /// The token of the deployment that runs (absent: the factory app, or empty after a
    /// removal when `removed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// The token of the deployment before it, kept until `current` proved healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// `current` has not passed its health check yet.
    #[serde(default)]
    pub trial: bool,
    /// The slot was emptied by a signed removal (its factory app does not run either).
    #[serde(default)]
    pub removed: bool,
    /// The slot was empty (removed) before the current deployment: rolling back empties it.
    #[serde(default)]
    pub previous_removed: bool,
    /// Why the deployment of the installed serial was rolled back, if it was: the answer to
    /// its token relayed again (after a restart of the agent or the device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
}

/// A deployment read back from the slot's state, verified again.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The signed token.
    pub token: String,
    /// Its document (verified).
    pub deployment: Deployment,
}

impl Installed {
    /// The release it deploys (`None` for a removal, which is never installed as current).
    pub fn release(&self) -> Option<&AppRelease> {
        match &self.deployment.action {
            Action::Deploy(release) => Some(release),
            Action::Remove => None,
        }
    }
}

/// What a slot holds at a moment.
#[derive(Debug, Clone)]
pub enum SlotContent {
    /// A deployed app.
    Deployed(Box<Installed>),
    /// The plan's factory app (`app_slots.<slot>.initial`).
    Initial,
    /// Nothing.
    Empty,
}

/// The slots' store on the data partition.
#[derive(Debug)]
pub struct SlotStore {
    root: PathBuf,
    keys: Vec<VerifyingKey>,
    compatible: String,
    files: BTreeMap<String, SlotFile>,
}

impl SlotStore {
    /// Opens the store under `data_dir` for `plan`'s slots, trusting `keys` (the image's
    /// deploy key; none: no deployment is ever accepted). Returns the store and, per slot, a
    /// problem found while reading its state (the slot then starts from its factory app).
    pub fn open(
        data_dir: &Path,
        plan: &Plan,
        keys: Vec<VerifyingKey>,
    ) -> (SlotStore, Vec<(String, SlotError)>) {
        let root = testudo_plan::layout::slots_dir(data_dir);
        let mut problems = Vec::new();
        let mut files = BTreeMap::new();
        for slot in plan.app_slots.keys() {
            let file = match read_slot_file(&root.join(slot).join(STATE_FILE)) {
                Ok(file) => file.unwrap_or_default(),
                Err(error) => {
                    problems.push((slot.clone(), error));
                    SlotFile::default()
                }
            };
            files.insert(slot.clone(), file);
        }
        (
            SlotStore {
                root,
                keys,
                compatible: plan.compatible.clone(),
                files,
            },
            problems,
        )
    }

    /// The keys deployments must be signed with.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The system deployments must be for (the plan's `compatible`).
    pub fn compatible(&self) -> &str {
        &self.compatible
    }

    /// The state of `slot`, if the plan has it.
    pub fn file(&self, slot: &str) -> Option<&SlotFile> {
        self.files.get(slot)
    }

    /// The directory of `slot`.
    pub fn slot_dir(&self, slot: &str) -> PathBuf {
        self.root.join(slot)
    }

    /// Where `slot`'s module of hash `sha256` is kept.
    pub fn module_path(&self, slot: &str, sha256: &str) -> PathBuf {
        self.slot_dir(slot).join(format!("{sha256}.wasm"))
    }

    /// Whether `slot` already holds a module of hash `sha256` whose bytes have that hash.
    pub fn has_module(&self, slot: &str, sha256: &str) -> bool {
        module_digest_matches(&self.module_path(slot, sha256), sha256)
    }

    /// What `slot` runs at boot: a trial interrupted by a restart is rolled back first (the
    /// new app never proved healthy), then the current token is verified again with its
    /// module. Problems found are returned; the slot then falls back to its factory app.
    pub fn boot_content(&mut self, slot: &str) -> (SlotContent, Vec<SlotError>) {
        let mut problems = Vec::new();
        if self.files.get(slot).is_some_and(|file| file.trial) {
            problems.push(SlotError::TrialInterrupted {
                slot: slot.to_owned(),
            });
            let serial = self.files.get(slot).and_then(|file| file.installed_serial);
            let why = format!(
                "serial {} was under its health check when the device restarted; rolled back",
                serial.unwrap_or_default()
            );
            if let Err(error) = self.roll_back(slot, &why) {
                problems.push(error);
            }
        }
        let Some(file) = self.files.get(slot) else {
            return (SlotContent::Empty, problems);
        };
        if file.removed {
            return (SlotContent::Empty, problems);
        }
        let Some(token) = file.current.clone() else {
            return (SlotContent::Initial, problems);
        };
        match self.reverify(slot, &token) {
            Ok(installed) => (SlotContent::Deployed(Box::new(installed)), problems),
            Err(error) => {
                problems.push(error);
                (SlotContent::Initial, problems)
            }
        }
    }

    /// Verifies a token read back from `slot`'s state, and its module.
    fn reverify(&self, slot: &str, token: &str) -> Result<Installed, SlotError> {
        let verified = testudo_deployment::verify(token, &self.keys).map_err(|source| {
            SlotError::Reverify {
                slot: slot.to_owned(),
                source,
            }
        })?;
        let deployment = verified.into_deployment();
        if let Action::Deploy(release) = &deployment.action {
            if deployment.slot != slot || !self.has_module(slot, &release.app.sha256) {
                return Err(SlotError::ModuleMissing {
                    slot: slot.to_owned(),
                    path: self.module_path(slot, &release.app.sha256),
                });
            }
        }
        Ok(Installed {
            token: token.to_owned(),
            deployment,
        })
    }

    /// Records a verified deployment as `slot`'s current one, on trial, keeping the current
    /// one as previous (unless the current one is itself still on trial: then the previous one
    /// stays); its module is already in place.
    pub fn begin_trial(&mut self, slot: &str, installed: &Installed) -> Result<(), SlotError> {
        let mut file = self.files.get(slot).cloned().unwrap_or_default();
        file.installed_serial = Some(installed.deployment.serial);
        // A deployment still on trial never proved healthy: what it would fall back to stays
        // the fallback.
        if !file.trial {
            file.previous_removed = file.removed;
            file.previous = if file.removed {
                None
            } else {
                file.current.take()
            };
        }
        file.current = Some(installed.token.clone());
        file.trial = true;
        file.removed = false;
        file.rolled_back = None;
        self.write(slot, file)
    }

    /// The trial of `slot`'s current deployment passed: it stays, and modules of neither
    /// the current nor the previous deployment are deleted.
    pub fn confirm(&mut self, slot: &str) -> Result<(), SlotError> {
        let mut file = self.files.get(slot).cloned().unwrap_or_default();
        file.trial = false;
        file.previous_removed = false;
        self.write(slot, file)?;
        self.collect_modules(slot);
        Ok(())
    }

    /// `slot`'s current deployment failed (`why`): the previous one is current again (or the
    /// factory app, when there was none). The serial stays consumed, and `why` is kept as
    /// the answer to its token.
    pub fn roll_back(&mut self, slot: &str, why: &str) -> Result<(), SlotError> {
        let mut file = self.files.get(slot).cloned().unwrap_or_default();
        file.current = file.previous.take();
        file.removed = std::mem::take(&mut file.previous_removed);
        file.trial = false;
        file.rolled_back = Some(why.to_owned());
        self.write(slot, file)
    }

    /// A verified removal of serial `serial`: the slot is empty from now on; the app it held
    /// stays as previous.
    pub fn remove(&mut self, slot: &str, serial: u64) -> Result<(), SlotError> {
        let mut file = self.files.get(slot).cloned().unwrap_or_default();
        file.installed_serial = Some(serial);
        if file.current.is_some() {
            file.previous = file.current.take();
        }
        file.trial = false;
        file.removed = true;
        file.previous_removed = false;
        file.rolled_back = None;
        self.write(slot, file)
    }

    /// Writes `slot`'s state atomically and keeps it.
    fn write(&mut self, slot: &str, file: SlotFile) -> Result<(), SlotError> {
        let dir = self.slot_dir(slot);
        let bytes = serde_json::to_vec_pretty(&file).map_err(|source| SlotError::Encode {
            slot: slot.to_owned(),
            source,
        })?;
        write_atomically(&dir, STATE_FILE, &bytes).map_err(|source| SlotError::WriteState {
            path: dir.join(STATE_FILE),
            source,
        })?;
        self.files.insert(slot.to_owned(), file);
        Ok(())
    }

    /// Deletes `slot`'s modules that neither its current nor its previous token names
    /// (best effort: a leftover file costs space, not correctness).
    fn collect_modules(&self, slot: &str) {
        let Some(file) = self.files.get(slot) else {
            return;
        };
        let keep: Vec<String> = [&file.current, &file.previous]
            .into_iter()
            .flatten()
            .filter_map(|token| testudo_deployment::verify(token, &self.keys).ok())
            .filter_map(|verified| match &verified.deployment().action {
                Action::Deploy(release) => Some(format!("{}.wasm", release.app.sha256)),
                Action::Remove => None,
            })
            .collect();
        let Ok(entries) = std::fs::read_dir(self.slot_dir(slot)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") && !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads a slot's state file; `None` when there is none yet.
fn read_slot_file(path: &Path) -> Result<Option<SlotFile>, SlotError> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SlotError::ReadState {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_FILE)
        .read_to_end(&mut bytes)
        .map_err(|source| SlotError::ReadState {
            path: path.to_owned(),
            source,
        })?;
    parse_slot_file(&bytes)
        .map(Some)
        .map_err(|source| SlotError::ParseState {
            path: path.to_owned(),
            source,
        })
}

/// Reads a slot's `state.json` (untrusted: the data partition is writable by more than init;
/// fuzzed in `os/init/fuzz`).
pub fn parse_slot_file(bytes: &[u8]) -> Result<SlotFile, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Whether the file at `path` exists and has sha256 `sha256`.
fn module_digest_matches(path: &Path, sha256: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = ModuleHasher::new();
    if std::io::copy(&mut file, &mut hasher).is_err() {
        return false;
    }
    hex::encode(hasher.finish().sha256) == sha256
}

/// Writes `bytes` as `dir/name` atomically: a temporary file in `dir`, fsync, rename over
/// `name`, fsync of `dir`.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use testudo_deployment::{App, SigningKey};

    fn plan() -> Plan {
        let mut plan = Plan::for_development_host("slots", std::iter::empty());
        plan.compatible = "test-system".into();
        plan.app_slots.insert(
            "cloud-app".into(),
            testudo_plan::AppSlot {
                max_uses: BTreeMap::new(),
                limits: testudo_plan::plan::Limits {
                    memory_bytes: 1 << 20,
                    cpu_percent: 10,
                    restart: testudo_plan::plan::RestartPolicy::Always,
                    max_tasks: 1,
                    cpu_time_ms: 0,
                },
                after: Vec::new(),
                initial: None,
            },
        );
        plan
    }

    fn installed(key: &SigningKey, serial: u64, module: &[u8]) -> Installed {
        let deployment = Deployment {
            slot: "cloud-app".into(),
            compatible: "test-system".into(),
            serial,
            action: Action::Deploy(AppRelease {
                app: App {
                    name: "probe".into(),
                    version: "1.0.0".into(),
                    sha256: hex::encode(sha2::Sha256::digest(module)),
                    size: module.len() as u64,
                },
                uses: BTreeMap::new(),
                url: None,
            }),
        };
        let token = testudo_deployment::sign(&deployment, key).unwrap();
        Installed { token, deployment }
    }

    use sha2::Digest as _;

    /// A store in a fresh data directory, trusting one key.
    struct Fixture {
        dir: tempfile::TempDir,
        key: SigningKey,
        store: SlotStore,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let key = SigningKey::from_bytes(&[7; 32]);
            let (store, problems) = SlotStore::open(dir.path(), &plan(), vec![key.verifying_key()]);
            assert!(problems.is_empty());
            Fixture { dir, key, store }
        }

        /// The store as the next boot opens it.
        fn reopen(&self) -> SlotStore {
            SlotStore::open(self.dir.path(), &plan(), vec![self.key.verifying_key()]).0
        }

        /// Puts `module` in place and starts the trial of its deployment as `serial`.
        fn trial(&mut self, serial: u64, module: &[u8]) {
            let sha = hex::encode(sha2::Sha256::digest(module));
            let dir = self.store.slot_dir("cloud-app");
            write_atomically(&dir, &format!("{sha}.wasm"), module).unwrap();
            let installed = installed(&self.key, serial, module);
            self.store.begin_trial("cloud-app", &installed).unwrap();
        }

        /// [`Fixture::trial`], then its health check passed.
        fn install(&mut self, serial: u64, module: &[u8]) {
            self.trial(serial, module);
            self.store.confirm("cloud-app").unwrap();
        }
    }

    fn deployed_serial(content: SlotContent) -> u64 {
        let SlotContent::Deployed(installed) = content else {
            panic!("not deployed: {content:?}")
        };
        installed.deployment.serial
    }

    #[test]
    fn a_confirmed_deployment_is_what_the_next_boot_runs() {
        let mut fixture = Fixture::new();
        fixture.install(1, b"module one");

        let (content, problems) = fixture.reopen().boot_content("cloud-app");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(deployed_serial(content), 1);
    }

    #[test]
    fn a_trial_interrupted_by_a_restart_is_rolled_back_to_the_previous_app() {
        let mut fixture = Fixture::new();
        fixture.install(1, b"module one");
        fixture.trial(2, b"module two");

        let mut reopened = fixture.reopen();
        let (content, problems) = reopened.boot_content("cloud-app");
        assert!(
            matches!(problems[..], [SlotError::TrialInterrupted { .. }]),
            "{problems:?}"
        );
        assert_eq!(deployed_serial(content), 1);
        assert_eq!(
            reopened.file("cloud-app").unwrap().installed_serial,
            Some(2)
        );
    }

    #[test]
    fn a_module_changed_on_disk_falls_back_to_the_factory_app() {
        let mut fixture = Fixture::new();
        fixture.install(1, b"module one");
        let sha = hex::encode(sha2::Sha256::digest(b"module one"));
        std::fs::write(fixture.store.module_path("cloud-app", &sha), b"module 0ne").unwrap();

        let (content, problems) = fixture.store.boot_content("cloud-app");
        assert!(matches!(content, SlotContent::Initial), "{content:?}");
        assert!(
            matches!(problems[..], [SlotError::ModuleMissing { .. }]),
            "{problems:?}"
        );
    }

    #[test]
    fn a_damaged_state_file_is_reported_and_the_slot_starts_from_its_factory_app() {
        let dir = tempfile::tempdir().unwrap();
        let slot_dir = testudo_plan::layout::slots_dir(dir.path()).join("cloud-app");
        std::fs::create_dir_all(&slot_dir).unwrap();
        std::fs::write(slot_dir.join(STATE_FILE), b"{\"current\": 3").unwrap();
        let (mut store, problems) = SlotStore::open(dir.path(), &plan(), Vec::new());
        assert!(
            matches!(problems[..], [(_, SlotError::ParseState { .. })]),
            "{problems:?}"
        );
        assert!(matches!(
            store.boot_content("cloud-app").0,
            SlotContent::Initial
        ));
    }

    #[test]
    fn a_failed_deployment_into_an_emptied_slot_rolls_back_to_empty() {
        let mut fixture = Fixture::new();
        fixture.install(1, b"module one");
        fixture.store.remove("cloud-app", 2).unwrap();
        fixture.trial(3, b"module two");
        fixture.store.roll_back("cloud-app", "test").unwrap();
        assert!(matches!(
            fixture.store.boot_content("cloud-app").0,
            SlotContent::Empty
        ));
    }

    #[test]
    fn a_deployment_during_a_trial_falls_back_to_the_last_healthy_app() {
        let mut fixture = Fixture::new();
        fixture.install(1, b"module one");
        fixture.trial(2, b"module two");
        fixture.trial(3, b"module three");
        fixture.store.roll_back("cloud-app", "test").unwrap();
        assert_eq!(
            deployed_serial(fixture.store.boot_content("cloud-app").0),
            1
        );
    }

    #[test]
    fn a_removal_empties_the_slot_and_consumes_its_serial() {
        let mut fixture = Fixture::new();
        fixture.store.remove("cloud-app", 4).unwrap();
        let mut reopened = fixture.reopen();
        assert!(matches!(
            reopened.boot_content("cloud-app").0,
            SlotContent::Empty
        ));
        assert_eq!(
            reopened.file("cloud-app").unwrap().installed_serial,
            Some(4)
        );
    }
}
