//! The supervisor: the state machine and poll loop. It starts components in dependency order
//! with exactly their routed handles ([`crate::routing`]), restarts them as
//! [`crate::restart`] decides, turns their output into events ([`crate::output`]), restarts
//! dependents after the dependency they lost, serves `status`, and shuts everything down.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use testudo_error_chain::error_chain;
use testudo_plan::plan::{Plan, PlanComponent};
use testudo_plan::SandboxRole;
use testudo_sandbox::pidfd;
use testudo_scheme::{handle_pair, send_grant, Grant, Rights, Server};

mod slots;

use crate::builtin::InitProvider;
use crate::deploy::{DeploymentService, SlotReports, SwitchQueue};
use crate::events::{EventKind, EventLog};
use crate::graph::{self, INIT_COMPONENT};
use crate::launch::{self, LaunchContext, LaunchFds};
use crate::output::LineBuffer;
use crate::power::PowerRequests;
use crate::restart::{self, Decision};
use crate::routing;
use crate::status::{StatusProvider, StatusTable};
use crate::{InitError, InitOptions, LaunchError};

/// Lifecycle of one component.
#[derive(Debug)]
enum State {
    /// Waiting for its dependencies (or for its first start).
    Waiting,
    /// Running.
    Running {
        pidfd: OwnedFd,
        control: Option<OwnedFd>,
        output: Option<OwnedFd>,
        partial: LineBuffer,
    },
    /// Waiting to be restarted.
    Backoff { until: Instant },
    /// Exited and not restarted.
    Exited,
    /// Given up on.
    Failed,
    /// Never started (missing WASM host).
    NotStarted,
    /// An app slot with nothing in it.
    Empty,
}

impl State {
    fn label(&self) -> &'static str {
        use testudo_plan::interfaces::ComponentState;
        match self {
            State::Waiting => ComponentState::Waiting,
            State::Running { .. } => ComponentState::Running,
            State::Backoff { .. } => ComponentState::Backoff,
            State::Exited => ComponentState::Exited,
            State::Failed => ComponentState::Failed,
            State::NotStarted => ComponentState::NotStarted,
            State::Empty => ComponentState::Empty,
        }
        .label()
    }
}

#[derive(Debug)]
struct Unit {
    index: u32,
    state: State,
    restarts: VecDeque<Instant>,
    total_restarts: u32,
    role: &'static str,
    /// Launched (or found unable to run) at least once.
    attempted: bool,
}

fn kernel(step: &'static str) -> impl FnOnce(std::io::Error) -> InitError {
    move |source| InitError::Kernel { step, source }
}

/// Sends `signal` through a pidfd (an already reaped child is not an error here).
fn signal(pidfd: BorrowedFd<'_>, signal: i32) {
    let _ = pidfd::send_signal(pidfd, signal);
}

/// How a reaped child ended.
enum Ending {
    Code(i32),
    Signal(i32),
}

/// Reaps the child behind `pidfd` (blocking if `block`); `None` if it is still running.
fn reap(pidfd: BorrowedFd<'_>, block: bool) -> Option<Ending> {
    let mode = if block {
        pidfd::WaitMode::Block
    } else {
        pidfd::WaitMode::Poll
    };
    match pidfd::wait(pidfd, mode) {
        Err(_) => Some(Ending::Code(-1)),
        Ok(None) => None,
        Ok(Some(exit)) => Some(match exit.exited() {
            Some(code) => Ending::Code(code),
            None => Ending::Signal(exit.status),
        }),
    }
}

/// The running supervisor (call [`Supervisor::run`] on its own thread or the main thread).
#[derive(Debug)]
pub struct Supervisor {
    plan: Plan,
    options: InitOptions,
    deps: BTreeMap<String, BTreeSet<String>>,
    order: Vec<String>,
    units: BTreeMap<String, Unit>,
    events: EventLog,
    status_table: StatusTable,
    status_control: OwnedFd,
    _status_thread: JoinHandle<()>,
    power: PowerRequests,
    power_wake: OwnedFd,
    plan_file: PathBuf,
    /// The cgroup v2 tree, or why limits are rlimits only.
    cgroup: Result<testudo_sandbox::CgroupTree, testudo_sandbox::CgroupError>,
    ready_announced: bool,
    /// The app slots: what each runs, its health check, its last result.
    slots: BTreeMap<String, slots::SlotRun>,
    slot_store: slots::SharedStore,
    switches: SwitchQueue,
    switch_wake: OwnedFd,
    slot_reports: SlotReports,
}

impl Supervisor {
    /// Validates the graph, prepares the state directory and starts the status scheme.
    pub fn new(
        plan: Plan,
        options: InitOptions,
        events: EventLog,
    ) -> Result<Supervisor, InitError> {
        for dir in [&options.state_dir, &options.data_dir] {
            std::fs::create_dir_all(dir).map_err(|source| InitError::StateDir {
                path: dir.clone(),
                source,
            })?;
        }
        let (slot_store, slot_runs) = slots::boot_slots(&plan, &options, &events);
        // Slots start after every component they may depend on: their units come last.
        let mut with_slots = plan.clone();
        for (name, run) in &slot_runs {
            if let Some(component) = &run.component {
                with_slots
                    .components
                    .insert(name.clone(), component.clone());
            }
        }
        let mut deps = graph::dependencies(&with_slots)?;
        let component_deps: BTreeMap<String, BTreeSet<String>> = deps
            .iter()
            .filter(|(name, _)| !slot_runs.contains_key(*name))
            .map(|(name, d)| (name.clone(), d.clone()))
            .collect();
        let mut order = graph::start_order(&component_deps)?;
        for name in slot_runs.keys() {
            deps.entry(name.clone()).or_default();
            order.push(name.clone());
        }
        let plan_file = options.state_dir.join("plan.json");
        let mut units: BTreeMap<String, Unit> = BTreeMap::new();
        for (i, name) in order.iter().enumerate() {
            let (role, state) = match (plan.components.get(name), slot_runs.get(name)) {
                (Some(component), _) => (launch::role_for(component), State::Waiting),
                (None, Some(run)) if run.component.is_some() => {
                    (SandboxRole::WasmHost.as_str(), State::Waiting)
                }
                (None, Some(_)) => (SandboxRole::WasmHost.as_str(), State::Empty),
                (None, None) => continue,
            };
            units.insert(
                name.clone(),
                Unit {
                    index: i as u32,
                    state,
                    restarts: VecDeque::new(),
                    total_restarts: 0,
                    role,
                    attempted: false,
                },
            );
        }
        let cgroup = match testudo_sandbox::cgroup2_mount() {
            Some(mount) => testudo_sandbox::CgroupTree::create(
                &testudo_sandbox::RealCgroupFs,
                &mount,
                &cgroup_tree_name(),
            ),
            None => Err(testudo_sandbox::CgroupError::NoMount),
        };
        events.push(
            INIT_COMPONENT,
            match &cgroup {
                Ok(tree) => EventKind::Limits {
                    mechanism: "cgroup-v2".to_owned(),
                    detail: tree.describe(),
                },
                Err(reason) => EventKind::Limits {
                    mechanism: "rlimits".to_owned(),
                    detail: error_chain(reason),
                },
            },
        );
        let status_table: StatusTable = Arc::new(Mutex::new(BTreeMap::new()));
        let (status_control, served) =
            handle_pair().map_err(|source| InitError::Status { source })?;
        let (power, power_wake) = PowerRequests::new()?;
        let (switches, switch_wake) = SwitchQueue::new()?;
        let slot_store = Arc::new(Mutex::new(slot_store));
        let slot_reports: SlotReports = Arc::new(Mutex::new(BTreeMap::new()));
        let provider = InitProvider::new(
            StatusProvider::new(Arc::clone(&status_table)),
            power.clone(),
            events.clone(),
            DeploymentService::new(
                plan.app_slots.clone(),
                Arc::clone(&slot_store),
                switches.clone(),
                Arc::clone(&slot_reports),
            ),
        );
        let status_thread = std::thread::Builder::new()
            .name("init-scheme".into())
            .spawn(move || {
                let _ = Server::new(provider).with_control(served).run();
            })
            .map_err(kernel("starting the status scheme thread"))?;
        let supervisor = Supervisor {
            plan,
            options,
            deps,
            order,
            units,
            events,
            status_table,
            status_control,
            _status_thread: status_thread,
            power,
            power_wake,
            plan_file,
            cgroup,
            ready_announced: false,
            slots: slot_runs,
            slot_store,
            switches,
            switch_wake,
            slot_reports,
        };
        supervisor.write_plan_file();
        Ok(supervisor)
    }

    /// The power requests components make through init's `power` capability; after
    /// [`Supervisor::run`] returns, [`PowerRequests::pending`] says whether to reboot or
    /// power off.
    pub fn power_requests(&self) -> PowerRequests {
        self.power.clone()
    }

    /// The start order.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// A new handle to init's `status` scheme.
    pub fn status_handle(&self, consumer: &str) -> Result<testudo_scheme::Handle, InitError> {
        builtin_handle(
            self.status_control.as_fd(),
            consumer,
            testudo_plan::interfaces::STATUS,
            Rights::Read,
        )
    }

    /// A duplicate of the control socket of init's own scheme, for handles made later
    /// ([`RunningSystem::builtin_handle`]).
    fn builtin_control(&self) -> Result<OwnedFd, InitError> {
        self.status_control
            .try_clone()
            .map_err(kernel("duplicating init's scheme control socket"))
    }

    /// Publishes the current states to the status scheme, then records the event, so an
    /// observer that saw the event also sees the state it reports.
    fn emit(&self, component: &str, kind: EventKind) {
        self.publish_status();
        self.events.push(component, kind);
    }

    fn publish_status(&self) {
        self.publish_slot_reports();
        let mut table = self
            .status_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        table.clear();
        for (name, unit) in &self.units {
            table.insert(
                name.clone(),
                (unit.state.label().to_owned(), unit.total_restarts),
            );
        }
    }

    /// Runs until `stop` becomes readable or a component asks init's `power` capability to
    /// reboot or power off, then shuts everything down.
    pub fn run(&mut self, stop: BorrowedFd<'_>) -> Result<(), InitError> {
        loop {
            self.start_what_can_start();
            self.announce_ready();
            self.publish_status();
            // Poll set: stop fd, power requests, then per running unit its pidfd and output
            // pipe.
            let mut watched: Vec<(String, bool)> = Vec::new();
            let mut fds: Vec<libc::pollfd> = [
                stop.as_raw_fd(),
                self.power_wake.as_raw_fd(),
                self.switch_wake.as_raw_fd(),
            ]
            .into_iter()
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
            for (name, unit) in &self.units {
                if let State::Running { pidfd, output, .. } = &unit.state {
                    fds.push(libc::pollfd {
                        fd: pidfd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    watched.push((name.clone(), true));
                    if let Some(output) = output {
                        fds.push(libc::pollfd {
                            fd: output.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        });
                        watched.push((name.clone(), false));
                    }
                }
            }
            let timeout = self.next_deadline().map_or(-1, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as i32
                    + 1
            });
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(kernel("polling components")(error));
            }
            if fds[0].revents != 0 || fds[1].revents != 0 {
                self.shutdown();
                return Ok(());
            }
            // Output first, so a component's last lines come before its exit event.
            for (entry, (name, is_pidfd)) in fds[3..].iter().zip(&watched) {
                if entry.revents != 0 && !is_pidfd {
                    self.drain_output(name);
                }
            }
            for (entry, (name, is_pidfd)) in fds[3..].iter().zip(&watched) {
                if entry.revents != 0 && *is_pidfd {
                    self.on_exit(name);
                }
            }
            if fds[2].revents != 0 {
                drain_pipe(self.switch_wake.as_fd());
                self.apply_switches();
            }
            self.check_trials();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.units
            .values()
            .filter_map(|unit| match unit.state {
                State::Backoff { until } => Some(until),
                _ => None,
            })
            .chain(self.trial_deadline())
            .min()
    }

    /// The component `name` runs: the plan's, or what an app slot holds.
    fn component(&self, name: &str) -> Option<&PlanComponent> {
        self.plan
            .components
            .get(name)
            .or_else(|| self.slots.get(name).and_then(|run| run.component.as_ref()))
    }

    fn is_running(&self, name: &str) -> bool {
        self.units
            .get(name)
            .is_some_and(|unit| matches!(unit.state, State::Running { .. }))
    }

    /// Starts, wave after wave, every component that is due and whose dependencies run.
    fn start_what_can_start(&mut self) {
        while self.start_one_wave() {}
    }

    /// Starts one wave; false when nothing was due.
    fn start_one_wave(&mut self) -> bool {
        let now = Instant::now();
        let mut batch = Vec::new();
        for name in self.order.clone() {
            let Some(unit) = self.units.get(&name) else {
                continue;
            };
            let due = match unit.state {
                State::Waiting => true,
                State::Backoff { until } => until <= now,
                _ => false,
            };
            let deps_up = self
                .deps
                .get(&name)
                .is_some_and(|deps| deps.iter().all(|d| self.is_running(d)));
            if due && deps_up {
                batch.push(name);
            }
        }
        // Everything in the batch has its dependencies running, so none depends on another:
        // their sandboxes are set up concurrently (each `spawn` waits for its child's exec),
        // then recorded in start order.
        if batch.is_empty() {
            return false;
        }
        let staged: Vec<(String, Staged)> = batch
            .into_iter()
            .filter_map(|name| self.stage_launch(&name).map(|staged| (name, staged)))
            .collect();
        let sequential = staged.len() == 1 || !self.options.concurrent_start;
        let spawned: Vec<(String, Staged, Result<Spawned, LaunchError>)> = if sequential {
            staged
                .into_iter()
                .map(|(name, mut staged)| {
                    let result = spawn_staged(&name, &mut staged);
                    (name, staged, result)
                })
                .collect()
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> = staged
                    .into_iter()
                    .map(|(name, mut staged)| {
                        scope.spawn(move || {
                            let result = spawn_staged(&name, &mut staged);
                            (name, staged, result)
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .filter_map(|worker| worker.join().ok())
                    .collect()
            })
        };
        let launched = spawned.iter().any(|(_, _, result)| result.is_ok());
        for (name, staged, result) in spawned {
            self.finish_launch(&name, staged, result);
        }
        launched
    }

    fn announce_ready(&mut self) {
        if self.ready_announced {
            return;
        }
        // Ready = every component has been brought up once (or found unable to run); a
        // component crashing later is supervision's business, not start-up's.
        let pending = self.units.values().any(|unit| {
            !unit.attempted && matches!(unit.state, State::Waiting | State::Backoff { .. })
        });
        if pending {
            return;
        }
        self.ready_announced = true;
        let components = self
            .units
            .iter()
            .filter(|(_, unit)| matches!(unit.state, State::Running { .. }))
            .map(|(name, _)| name.clone())
            .collect();
        self.emit(INIT_COMPONENT, EventKind::Ready { components });
    }

    fn set_state(&mut self, name: &str, state: State) {
        if let Some(unit) = self.units.get_mut(name) {
            unit.state = state;
        }
    }

    /// Makes `name`'s routed handles ([`routing::routed_handles`]).
    fn route_handles(
        &self,
        name: &str,
        component: &PlanComponent,
    ) -> Result<Vec<(String, OwnedFd)>, LaunchError> {
        routing::routed_handles(
            name,
            component,
            self.status_control.as_fd(),
            |provider| match self.units.get(provider).map(|u| &u.state) {
                Some(State::Running {
                    control: Some(control),
                    ..
                }) => Some(control.as_fd()),
                _ => None,
            },
        )
    }

    /// The parent-side part of a launch that needs the supervisor: availability, routed
    /// handles, the sandbox spec. `None` when it was found unable to start (reported).
    fn stage_launch(&mut self, name: &str) -> Option<Staged> {
        let component = self.component(name)?.clone();
        if let Some(unit) = self.units.get_mut(name) {
            unit.attempted = true;
        }
        let program = match launch::unavailable(&component, &self.options).map_or_else(
            || launch::binary_for(&component, &self.options).map_err(|e| error_chain(&e)),
            Err,
        ) {
            Ok(program) => program,
            Err(reason) => {
                self.set_state(name, State::NotStarted);
                self.emit(name, EventKind::NotStarted { reason });
                self.fail_dependents(name);
                return None;
            }
        };
        let staged = self.prepare_launch(name, &component, program);
        match staged {
            Ok(staged) => Some(staged),
            Err(error) => {
                let error = error_chain(&error);
                let why = format!("could not start ({error})");
                self.emit(name, EventKind::LaunchFailed { error });
                self.after_ending(name, false, &why);
                None
            }
        }
    }

    /// The launch of `name`: its routed handles, control socket, output pipe and sandbox spec.
    fn prepare_launch(
        &self,
        name: &str,
        component: &PlanComponent,
        program: PathBuf,
    ) -> Result<Staged, LaunchError> {
        let handles = self.route_handles(name, component)?;
        let (control_init, control_child) = if component.provides.is_empty() {
            (None, None)
        } else {
            let (a, b) = handle_pair().map_err(|source| LaunchError::ControlSocket {
                component: name.to_owned(),
                source: Box::new(source),
            })?;
            (Some(a), Some(b))
        };
        let output_pipe = |source| LaunchError::OutputPipe {
            component: name.to_owned(),
            source,
        };
        let (out_read, out_write) = std::io::pipe().map_err(output_pipe)?;
        let out_write = OwnedFd::from(out_write);
        let null = Path::new("/dev/null");
        let stdin =
            OwnedFd::from(
                std::fs::File::open(null).map_err(|source| LaunchError::Stdin {
                    component: name.to_owned(),
                    path: null.to_owned(),
                    source,
                })?,
            );
        let stderr = out_write.try_clone().map_err(output_pipe)?;
        let ctx = LaunchContext {
            plan: &self.plan,
            name,
            index: self.units[name].index,
            options: &self.options,
            plan_file: &self.plan_file,
            cgroup: self.cgroup.as_ref().ok(),
            module_source: self
                .slots
                .get(name)
                .and_then(|run| run.module_source.as_deref()),
        };
        let spec = launch::spec_for(
            &ctx,
            component,
            program,
            LaunchFds {
                handles,
                control: control_child,
                stdio: [stdin, out_write, stderr],
            },
        )?;
        Ok(Staged {
            spec: Some(spec),
            control: control_init,
            output: OwnedFd::from(out_read),
        })
    }

    /// Records the outcome of a launch.
    fn finish_launch(&mut self, name: &str, staged: Staged, result: Result<Spawned, LaunchError>) {
        match result {
            Ok(Spawned { pid, pidfd, report }) => {
                self.emit(name, EventKind::Started { pid, report });
                self.set_state(
                    name,
                    State::Running {
                        pidfd,
                        control: staged.control,
                        output: Some(staged.output),
                        partial: LineBuffer::default(),
                    },
                );
                self.slot_started(name);
            }
            Err(error) => {
                let error = error_chain(&error);
                let why = format!("could not start ({error})");
                self.emit(name, EventKind::LaunchFailed { error });
                self.after_ending(name, false, &why);
            }
        }
    }

    fn drain_output(&mut self, name: &str) {
        let mut lines = Vec::new();
        if let Some(Unit {
            state: State::Running {
                output, partial, ..
            },
            ..
        }) = self.units.get_mut(name)
        {
            let mut buf = [0u8; 4096];
            let n = match output.as_ref().map(|fd| {
                // SAFETY: reads into a stack buffer from our pipe fd.
                unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
            }) {
                Some(n) if n > 0 => n as usize,
                _ => {
                    *output = None;
                    0
                }
            };
            lines = partial.push(&buf[..n]);
            if output.is_none() {
                lines.extend(partial.finish());
            }
        }
        for line in lines {
            self.emit(name, EventKind::Output { line });
        }
    }

    fn on_exit(&mut self, name: &str) {
        let ending = match self.units.get(name).map(|u| &u.state) {
            Some(State::Running { pidfd, .. }) => reap(pidfd.as_fd(), false),
            _ => return,
        };
        let Some(ending) = ending else { return };
        // Collect whatever output is still buffered in the pipe.
        loop {
            let before = self.events.snapshot().len();
            self.drain_output(name);
            let open = matches!(
                self.units.get(name).map(|u| &u.state),
                Some(State::Running {
                    output: Some(_),
                    ..
                })
            );
            if !open || self.events.snapshot().len() == before {
                break;
            }
        }
        let role = self.units.get(name).map_or("", |u| u.role);
        let (success, why) = match ending {
            Ending::Code(code) => {
                self.emit(name, EventKind::Exited { code });
                self.slot_exited(name, code);
                (code == 0, format!("exited with code {code}"))
            }
            Ending::Signal(signal) => {
                if signal == libc::SIGSYS {
                    self.emit(
                        name,
                        EventKind::SeccompDenied {
                            role: role.to_owned(),
                        },
                    );
                } else {
                    self.emit(name, EventKind::Signaled { signal });
                }
                (false, format!("was killed by signal {signal}"))
            }
        };
        self.set_state(name, State::Waiting);
        self.after_ending(name, success, &why);
    }

    /// Decides what happens after `name` stopped (or failed to launch; `why` says how, in
    /// words).
    fn after_ending(&mut self, name: &str, success: bool, why: &str) {
        if self.slot_trial_failed(name, why) {
            return;
        }
        self.stop_dependents(name);
        let policy = self
            .component(name)
            .map_or(testudo_plan::plan::RestartPolicy::Never, |c| {
                c.limits.restart
            });
        let backoff = self.options.backoff;
        let now = Instant::now();
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        match restart::decide(policy, success, &mut unit.restarts, now, &backoff) {
            Decision::Stay => {
                unit.state = if success {
                    State::Exited
                } else {
                    State::Failed
                };
                if !success {
                    self.emit(
                        name,
                        EventKind::Failed {
                            reason: "exited and its restart policy is never".to_owned(),
                        },
                    );
                }
                self.fail_dependents(name);
            }
            Decision::GiveUp { attempt } => {
                unit.state = State::Failed;
                self.emit(
                    name,
                    EventKind::Failed {
                        reason: format!(
                            "crash loop: {attempt} restarts within {} s",
                            backoff.window.as_secs_f64()
                        ),
                    },
                );
                self.fail_dependents(name);
            }
            Decision::Restart { delay, attempt } => {
                unit.total_restarts += 1;
                unit.state = State::Backoff { until: now + delay };
                self.emit(
                    name,
                    EventKind::Restarting {
                        delay_ms: delay.as_millis() as u64,
                        attempt,
                    },
                );
            }
        }
    }

    /// Stops every running dependent of `name` (their handles to it are dead); they start
    /// again, in order, once `name` runs again.
    fn stop_dependents(&mut self, name: &str) {
        let dependents = graph::dependents(&self.deps, name);
        for dependent in self
            .order
            .clone()
            .iter()
            .rev()
            .filter(|d| dependents.contains(*d))
        {
            let Some(unit) = self.units.get_mut(dependent) else {
                continue;
            };
            if let State::Running { pidfd, .. } = &unit.state {
                signal(pidfd.as_fd(), libc::SIGKILL);
                reap(pidfd.as_fd(), true);
                unit.state = State::Waiting;
                self.emit(
                    dependent,
                    EventKind::StoppedForDependency {
                        dependency: name.to_owned(),
                    },
                );
            }
        }
    }

    /// Marks every waiting dependent of a component that will not run again as failed.
    fn fail_dependents(&mut self, name: &str) {
        for dependent in graph::dependents(&self.deps, name) {
            let Some(unit) = self.units.get_mut(&dependent) else {
                continue;
            };
            if matches!(unit.state, State::Waiting | State::Backoff { .. }) {
                unit.state = State::Failed;
                self.emit(
                    &dependent,
                    EventKind::Failed {
                        reason: format!("dependency {name} is not running"),
                    },
                );
            }
        }
    }

    /// Stops every component in reverse start order: SIGTERM (and closing providers'
    /// control sockets), then SIGKILL after the grace period; reaps all of them.
    pub fn shutdown(&mut self) {
        let order: Vec<String> = self.order.iter().rev().cloned().collect();
        for name in &order {
            if let Some(Unit {
                state: State::Running { pidfd, control, .. },
                ..
            }) = self.units.get_mut(name)
            {
                *control = None;
                signal(pidfd.as_fd(), libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + self.options.stop_grace;
        for name in &order {
            let Some(unit) = self.units.get_mut(name) else {
                continue;
            };
            let State::Running { pidfd, .. } = &unit.state else {
                continue;
            };
            let mut killed = false;
            loop {
                if reap(pidfd.as_fd(), false).is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    signal(pidfd.as_fd(), libc::SIGKILL);
                    reap(pidfd.as_fd(), true);
                    killed = true;
                    break;
                }
                let mut entry = libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis() as i32
                    + 1;
                // SAFETY: polls one valid pidfd.
                unsafe { libc::poll(&mut entry, 1, wait) };
            }
            unit.state = State::Exited;
            self.events.push(name, EventKind::Stopped { killed });
        }
        if let Ok(tree) = &self.cgroup {
            let _ = tree.remove(
                &testudo_sandbox::RealCgroupFs,
                self.order.iter().map(String::as_str),
            );
        }
        self.publish_status();
        self.emit(INIT_COMPONENT, EventKind::ShutdownComplete);
    }
}

/// The name of this supervisor's cgroup tree: `testudo-PID`, with a suffix for every
/// further supervisor in the same process (tests run several at once).
fn cgroup_tree_name() -> String {
    static SUPERVISORS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SUPERVISORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n == 0 {
        format!("testudo-{}", std::process::id())
    } else {
        format!("testudo-{}-{n}", std::process::id())
    }
}

/// Reads whatever bytes wait in a wake-up pipe (they carry no data).
fn drain_pipe(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a stack buffer from a pipe fd the caller owns; one read takes up to
    // 64 wake-ups, and a later poll sees any that remain.
    unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
}

/// A launch prepared by the supervisor, waiting for its sandbox.
struct Staged {
    /// Taken by [`spawn_staged`].
    spec: Option<testudo_sandbox::SandboxSpec>,
    /// init's end of the provider control socket.
    control: Option<OwnedFd>,
    /// Read end of the component's output pipe.
    output: OwnedFd,
}

/// A component process running in its sandbox.
struct Spawned {
    pid: i32,
    pidfd: OwnedFd,
    report: Box<testudo_sandbox::RuntimeReport>,
}

/// Builds and starts the sandbox (needs no supervisor state, so launches of independent
/// components run concurrently).
fn spawn_staged(name: &str, staged: &mut Staged) -> Result<Spawned, LaunchError> {
    let spec = staged
        .spec
        .take()
        .ok_or_else(|| LaunchError::AlreadySpawned {
            component: name.to_owned(),
        })?;
    let prepared = testudo_sandbox::prepare(spec).map_err(|source| LaunchError::Prepare {
        component: name.to_owned(),
        source: Box::new(source),
    })?;
    let child = testudo_sandbox::spawn(&testudo_sandbox::RealSys, prepared).map_err(|source| {
        LaunchError::Spawn {
            component: name.to_owned(),
            source: Box::new(source),
        }
    })?;
    let mut report = child.report;
    report.enforcement = testudo_sandbox::proc_enforcement(child.pid).ok();
    Ok(Spawned {
        pid: child.pid,
        pidfd: child.pidfd,
        report: Box::new(report),
    })
}

/// A new handle to init's own `capability` (`status`, `power`) for `consumer`.
fn builtin_handle(
    control: BorrowedFd<'_>,
    consumer: &str,
    capability: &str,
    rights: Rights,
) -> Result<testudo_scheme::Handle, InitError> {
    let (kept, given) = handle_pair().map_err(|source| InitError::Status { source })?;
    let grant = Grant {
        consumer: consumer.to_owned(),
        capability: capability.to_owned(),
        rights,
        allow: Vec::new(),
    };
    send_grant(control, &grant, kept.as_fd()).map_err(|source| InitError::Status { source })?;
    Ok(testudo_scheme::Handle::from_fd(given))
}

/// A supervisor running on its own thread.
#[derive(Debug)]
pub struct RunningSystem {
    /// The event log.
    pub events: EventLog,
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<Result<(), InitError>>>,
    status: testudo_scheme::Handle,
    power: PowerRequests,
    builtin_control: OwnedFd,
}

impl RunningSystem {
    /// Starts `plan` on a new thread.
    pub fn start(plan: Plan, options: InitOptions) -> Result<RunningSystem, InitError> {
        let events = EventLog::new(options.echo);
        let mut supervisor = Supervisor::new(plan, options, events.clone())?;
        let status = supervisor.status_handle("observer")?;
        let power = supervisor.power_requests();
        let builtin_control = supervisor.builtin_control()?;
        let (stop_read, stop_write) = std::io::pipe().map_err(kernel("creating the stop pipe"))?;
        let stop_read = OwnedFd::from(stop_read);
        let thread = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || supervisor.run(stop_read.as_fd()))
            .map_err(kernel("starting the supervisor thread"))?;
        Ok(RunningSystem {
            events,
            stop: Some(OwnedFd::from(stop_write)),
            thread: Some(thread),
            status,
            power,
            builtin_control,
        })
    }

    /// A new handle to init's own `capability` (`status`, `power`) for `consumer`, as a
    /// route to init would give it.
    pub fn builtin_handle(
        &self,
        consumer: &str,
        capability: &str,
        rights: Rights,
    ) -> Result<testudo_scheme::Handle, InitError> {
        builtin_handle(self.builtin_control.as_fd(), consumer, capability, rights)
    }

    /// The power request a component made, if any (the supervisor then stops by itself).
    pub fn power_request(&self) -> Option<(crate::PowerAction, String)> {
        self.power.pending()
    }

    /// Waits for the supervisor to finish by itself (after a power request).
    pub fn wait(mut self) -> Result<(), InitError> {
        match self.thread.take() {
            Some(thread) => joined(thread.join()),
            None => Ok(()),
        }
    }

    /// Reads the `status` scheme: `name state restarts` per line.
    pub fn status(&self) -> Result<String, testudo_scheme::SchemeError> {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self.status.read(&mut buf)?;
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Stops every component and waits for the supervisor to finish.
    pub fn stop(mut self) -> Result<(), InitError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), InitError> {
        if let Some(stop) = self.stop.take() {
            let mut file = std::fs::File::from(stop);
            let _ = std::io::Write::write_all(&mut file, &[1]);
        }
        match self.thread.take() {
            Some(thread) => joined(thread.join()),
            None => Ok(()),
        }
    }
}

/// Maps the supervisor thread's join result: a panic becomes
/// [`InitError::SupervisorPanicked`].
fn joined(result: std::thread::Result<Result<(), InitError>>) -> Result<(), InitError> {
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".to_owned());
        Err(InitError::SupervisorPanicked { message })
    })
}

impl Drop for RunningSystem {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicked_supervisor_thread_is_an_error() {
        let thread = std::thread::spawn(|| -> Result<(), InitError> { panic!("boom") });
        let result = joined(thread.join());
        assert!(
            matches!(&result, Err(InitError::SupervisorPanicked { message }) if message == "boom"),
            "{result:?}"
        );
    }

    #[test]
    fn a_returning_supervisor_thread_keeps_its_result() {
        assert!(joined(Ok(Ok(()))).is_ok());
        let failed = joined(Ok(Err(InitError::DependencyCycle {
            components: "a".to_owned(),
        })));
        assert!(matches!(failed, Err(InitError::DependencyCycle { .. })));
    }
}
