//! The supervisor's side of the app slots: each slot is a unit like a component, running
//! what the slot holds (a deployed app, re-verified from the data partition, else the plan's
//! factory app, else nothing). A verified deployment ([`crate::deploy`]) switches the slot:
//! the running app stops, the new one starts with only its routes, and it stays under a
//! health check for [`crate::InitOptions::slot_health_check`]; ending during that time rolls
//! the slot back to what ran before. Exactly one version of a slot's app runs at any time.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use testudo_deployment::twin::{DesiredStatus, RuntimeStatus, SlotReport};
use testudo_deployment::{Action, SessionState};
use testudo_error_chain::error_chain;
use testudo_plan::plan::{ComponentKind, Devices, Plan, PlanComponent, Run};
use testudo_plan::{AppSlot, SandboxRole};

use super::{reap, signal, State, Supervisor};
use crate::deploy::{set_state, SharedSession, SlotSwitch};
use crate::events::EventKind;
use crate::slots::{SlotContent, SlotStore};

/// The module path (inside the WASM host's app root) of a deployed module.
fn deployed_module(slot: &str, sha256: &str) -> String {
    format!("deployed/{slot}/{sha256}.wasm")
}

/// A slot's run-time state besides its unit.
#[derive(Debug)]
pub(super) struct SlotRun {
    /// What the slot holds.
    pub(super) content: SlotContent,
    /// The component running it (absent when empty).
    pub(super) component: Option<PlanComponent>,
    /// The host path of a deployed module (a factory app's is under the app root).
    pub(super) module_source: Option<PathBuf>,
    /// A deployment under its health check.
    pub(super) trial: Option<Trial>,
    /// How the last deployment to the slot went.
    pub(super) last_result: Option<DesiredStatus>,
    /// The app's last exit code.
    pub(super) exit_code: Option<i32>,
}

/// A deployment under its health check.
#[derive(Debug)]
pub(super) struct Trial {
    serial: u64,
    session: SharedSession,
    /// When the check ends (set once the app started).
    deadline: Option<Instant>,
}

/// The component that runs `content` in `slot`, and a deployed module's host path.
pub(super) fn slot_component(
    name: &str,
    slot: &AppSlot,
    content: &SlotContent,
    store: &SlotStore,
) -> Option<(PlanComponent, Option<PathBuf>)> {
    let (module, uses, source) = match content {
        SlotContent::Empty => return None,
        SlotContent::Initial => {
            let initial = slot.initial.as_ref()?;
            (initial.module.clone(), initial.uses.clone(), None)
        }
        SlotContent::Deployed(installed) => {
            let release = installed.release()?;
            (
                deployed_module(name, &release.app.sha256),
                release.uses.clone(),
                Some(store.module_path(name, &release.app.sha256)),
            )
        }
    };
    Some((
        PlanComponent {
            kind: ComponentKind::Wasm,
            role: SandboxRole::WasmHost,
            run: Run::Wasm { module },
            devices: Devices::default(),
            provides: BTreeMap::new(),
            uses,
            limits: slot.limits.clone(),
            after: slot.after.clone(),
            env: BTreeMap::new(),
            args: Vec::new(),
        },
        source,
    ))
}

/// Opens the slots' store and decides what each slot runs at boot; problems are reported
/// as events of the slot.
pub(super) fn boot_slots(
    plan: &Plan,
    options: &crate::InitOptions,
    events: &crate::EventLog,
) -> (SlotStore, BTreeMap<String, SlotRun>) {
    let keys = match &options.deploy_key {
        None => Vec::new(),
        Some(path) => match testudo_deployment::read_public_key(path) {
            Ok(key) => vec![key],
            Err(source) => {
                let error = crate::SlotError::DeployKey {
                    path: path.clone(),
                    source,
                };
                events.push(
                    super::INIT_COMPONENT,
                    EventKind::Slot {
                        message: format!("no deployment will be accepted: {}", error_chain(&error)),
                    },
                );
                Vec::new()
            }
        },
    };
    let (mut store, problems) = SlotStore::open(&options.data_dir, plan, keys);
    for (slot, problem) in problems {
        events.push(
            &slot,
            EventKind::Slot {
                message: error_chain(&problem),
            },
        );
    }
    let mut runs = BTreeMap::new();
    for (name, slot) in &plan.app_slots {
        let (content, problems) = store.boot_content(name);
        for problem in problems {
            events.push(
                name,
                EventKind::Slot {
                    message: error_chain(&problem),
                },
            );
        }
        let built = slot_component(name, slot, &content, &store);
        let (component, module_source) = match built {
            Some((component, source)) => (Some(component), source),
            None => (None, None),
        };
        runs.insert(
            name.clone(),
            SlotRun {
                content,
                component,
                module_source,
                trial: None,
                last_result: None,
                exit_code: None,
            },
        );
    }
    (store, runs)
}

impl Supervisor {
    /// The plan the WASM hosts read: the image's, with a component per filled slot. A slot's
    /// host runs its app once (`restart = never` in this view): init restarts the host under
    /// the slot's policy, so a failing app ends the process and a health check sees it.
    pub(super) fn effective_plan(&self) -> Plan {
        let mut plan = self.plan.clone();
        for (name, run) in &self.slots {
            if let Some(component) = &run.component {
                let mut component = component.clone();
                component.limits.restart = testudo_plan::plan::RestartPolicy::Never;
                plan.components.insert(name.clone(), component);
            }
        }
        plan
    }

    /// Applies every queued switch.
    pub(super) fn apply_switches(&mut self) {
        for switch in self.switches.take() {
            self.apply_switch(switch);
        }
    }

    fn apply_switch(&mut self, switch: SlotSwitch) {
        let SlotSwitch {
            slot,
            installed,
            session,
        } = switch;
        let serial = installed.deployment.serial;
        let store = Arc::clone(&self.slot_store);
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        // Another session may have installed a newer serial meanwhile.
        if let Some(installed_serial) = store
            .file(&slot)
            .and_then(|file| file.installed_serial)
            .filter(|installed_serial| *installed_serial >= serial)
        {
            set_state(
                &session,
                SessionState::Refused {
                    code: 400,
                    description: format!(
                        "serial {serial} is not greater than the slot's installed serial {installed_serial}"
                    ),
                },
            );
            return;
        }
        let recorded = match &installed.deployment.action {
            Action::Remove => store.remove(&slot, serial),
            Action::Deploy(_) => store.begin_trial(&slot, &installed),
        };
        if let Err(error) = recorded {
            set_state(
                &session,
                SessionState::RolledBack {
                    code: 500,
                    description: error_chain(&error),
                },
            );
            return;
        }
        let content = match installed.deployment.action {
            Action::Remove => SlotContent::Empty,
            Action::Deploy(_) => SlotContent::Deployed(Box::new(installed)),
        };
        let what = describe(&content, self.plan.app_slots.get(&slot));
        self.put_slot(&slot, content, &store);
        drop(store);
        // A deployment still under its health check is superseded: it never proved healthy.
        if let Some(superseded) = self.slots.get_mut(&slot).and_then(|run| run.trial.take()) {
            set_state(
                &superseded.session,
                SessionState::RolledBack {
                    code: 500,
                    description: format!(
                        "serial {} was superseded by serial {serial} during its health check",
                        superseded.serial
                    ),
                },
            );
        }
        self.emit(
            &slot,
            EventKind::Slot {
                message: format!("serial {serial}: {what}"),
            },
        );
        let run = self.slots.get_mut(&slot);
        match run {
            Some(run) if run.component.is_some() => {
                run.trial = Some(Trial {
                    serial,
                    session: Arc::clone(&session),
                    deadline: None,
                });
                set_state(&session, SessionState::Applying { serial });
            }
            Some(run) => {
                let state = SessionState::Applied { serial };
                run.last_result = state.desired_status();
                set_state(&session, state);
            }
            None => {}
        }
        self.publish_status();
    }

    /// Stops whatever runs in `slot` and makes it run `content` (started by the next wave).
    fn put_slot(&mut self, slot: &str, content: SlotContent, store: &SlotStore) {
        let Some(plan_slot) = self.plan.app_slots.get(slot) else {
            return;
        };
        let built = slot_component(slot, plan_slot, &content, store);
        if let Some(unit) = self.units.get_mut(slot) {
            if let State::Running { pidfd, .. } = &unit.state {
                signal(pidfd.as_fd(), libc::SIGKILL);
                reap(pidfd.as_fd(), true);
            }
            unit.restarts.clear();
            unit.total_restarts = 0;
            unit.attempted = false;
            unit.state = if built.is_some() {
                State::Waiting
            } else {
                State::Empty
            };
        }
        if let Some((component, _)) = &built {
            let mut deps: std::collections::BTreeSet<String> =
                component.after.iter().cloned().collect();
            deps.extend(component.uses.values().map(|route| route.component.clone()));
            deps.remove(super::INIT_COMPONENT);
            self.deps.insert(slot.to_owned(), deps);
        }
        if let Some(run) = self.slots.get_mut(slot) {
            run.content = content;
            run.exit_code = None;
            (run.component, run.module_source) = match built {
                Some((component, source)) => (Some(component), source),
                None => (None, None),
            };
        }
        self.write_plan_file();
    }

    /// Writes the effective plan for the WASM hosts (atomically: running hosts keep the one
    /// they were started with).
    pub(super) fn write_plan_file(&self) {
        let written = serde_json::to_vec_pretty(&self.effective_plan())
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let dir = self.plan_file.parent().unwrap_or(std::path::Path::new("."));
                let name = self
                    .plan_file
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                crate::slots::write_atomically(dir, &name, &bytes)
            });
        if let Err(error) = written {
            self.events.push(
                super::INIT_COMPONENT,
                EventKind::Slot {
                    message: format!("writing {}: {error}", self.plan_file.display()),
                },
            );
        }
    }

    /// A slot's app started: its health check begins.
    pub(super) fn slot_started(&mut self, name: &str) {
        let health_check = self.options.slot_health_check;
        let Some(trial) = self.slots.get_mut(name).and_then(|run| run.trial.as_mut()) else {
            return;
        };
        if trial.deadline.is_none() {
            trial.deadline = Some(Instant::now() + health_check);
            set_state(
                &trial.session,
                SessionState::Started {
                    serial: trial.serial,
                    health_check_ms: health_check.as_millis() as u64,
                },
            );
        }
    }

    /// When the next health check ends.
    pub(super) fn trial_deadline(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|run| run.trial.as_ref()?.deadline)
            .min()
    }

    /// Confirms every slot whose app ran through its health check.
    pub(super) fn check_trials(&mut self) {
        let now = Instant::now();
        let passed: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, run)| {
                run.trial
                    .as_ref()
                    .and_then(|trial| trial.deadline)
                    .is_some_and(|deadline| deadline <= now)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in passed {
            let Some(trial) = self.slots.get_mut(&name).and_then(|run| run.trial.take()) else {
                continue;
            };
            let confirmed = self
                .slot_store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .confirm(&name);
            let state = match confirmed {
                Ok(()) => SessionState::Applied {
                    serial: trial.serial,
                },
                Err(error) => SessionState::RolledBack {
                    code: 500,
                    description: error_chain(&error),
                },
            };
            if let Some(run) = self.slots.get_mut(&name) {
                run.last_result = state.desired_status();
            }
            set_state(&trial.session, state);
            self.emit(
                &name,
                EventKind::Slot {
                    message: format!("serial {} passed its health check", trial.serial),
                },
            );
        }
    }

    /// Called when a slot's app ended or failed to launch: during its health check that
    /// rolls the slot back (and `true` is returned: the restart policy does not apply).
    pub(super) fn slot_trial_failed(&mut self, name: &str, why: &str) -> bool {
        let Some(trial) = self.slots.get_mut(name).and_then(|run| run.trial.take()) else {
            return false;
        };
        let store = Arc::clone(&self.slot_store);
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        // What it falls back to, to say so in the reason kept with the serial.
        let fallback = store
            .file(name)
            .map(|file| {
                if file.previous.is_some() {
                    "the previous app".to_owned()
                } else if file.previous_removed {
                    "an empty slot".to_owned()
                } else {
                    describe(&SlotContent::Initial, self.plan.app_slots.get(name))
                }
            })
            .unwrap_or_default();
        let kept = format!(
            "serial {} {why} during its health check; rolled back to {fallback}",
            trial.serial
        );
        let rolled_back = store.roll_back(name, &kept);
        let (content, problems) = store.boot_content(name);
        let what = describe(&content, self.plan.app_slots.get(name));
        self.put_slot(name, content, &store);
        drop(store);
        let mut description = format!(
            "serial {} {why} during its health check; rolled back to {what}",
            trial.serial
        );
        for problem in rolled_back.err().into_iter().chain(problems) {
            description.push_str(&format!(" ({})", error_chain(&problem)));
        }
        self.emit(
            name,
            EventKind::Slot {
                message: description.clone(),
            },
        );
        let state = SessionState::RolledBack {
            code: 500,
            description,
        };
        if let Some(run) = self.slots.get_mut(name) {
            run.last_result = state.desired_status();
        }
        set_state(&trial.session, state);
        true
    }

    /// Records a slot app's exit code for its report.
    pub(super) fn slot_exited(&mut self, name: &str, code: i32) {
        if let Some(run) = self.slots.get_mut(name) {
            run.exit_code = Some(code);
        }
    }

    /// Publishes every slot's report for the `deployment` capability's root.
    pub(super) fn publish_slot_reports(&self) {
        let reports: BTreeMap<String, SlotReport> = self
            .slots
            .iter()
            .map(|(name, run)| {
                let unit = self.units.get(name);
                let runtime_status = match unit.map(|unit| &unit.state) {
                    Some(State::Running { .. }) => RuntimeStatus::Running,
                    Some(State::Backoff { .. }) => RuntimeStatus::Backoff,
                    Some(State::Failed | State::NotStarted) => RuntimeStatus::Failed,
                    _ => RuntimeStatus::Stopped,
                };
                let release = match &run.content {
                    SlotContent::Deployed(installed) => {
                        installed.release().map(|release| (release, installed))
                    }
                    _ => None,
                };
                (
                    name.clone(),
                    SlotReport {
                        app: release.map(|(release, _)| release.app.name.clone()),
                        version: release.map(|(release, _)| release.app.version.clone()),
                        sha256: release.map(|(release, _)| release.app.sha256.clone()),
                        serial: release.map(|(_, installed)| installed.deployment.serial),
                        runtime_status,
                        restart_count: unit.map_or(0, |unit| unit.total_restarts),
                        exit_code: run.exit_code,
                        last_result: run.last_result.clone(),
                    },
                )
            })
            .collect();
        *self
            .slot_reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reports;
    }
}

/// What a slot holds, in words.
fn describe(content: &SlotContent, slot: Option<&AppSlot>) -> String {
    match content {
        SlotContent::Empty => "an empty slot".to_owned(),
        SlotContent::Initial if slot.is_some_and(|slot| slot.initial.is_some()) => {
            "its factory app".to_owned()
        }
        SlotContent::Initial => "an empty slot (it has no factory app)".to_owned(),
        SlotContent::Deployed(installed) => match installed.release() {
            Some(release) => format!(
                "{} {} (serial {})",
                release.app.name, release.app.version, installed.deployment.serial
            ),
            None => "an empty slot".to_owned(),
        },
    }
}

/// The shared slots' store.
pub(super) type SharedStore = Arc<Mutex<SlotStore>>;
