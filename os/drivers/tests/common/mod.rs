//! Shared helpers: build small plans and run them under the real supervisor with the real
//! driver binaries of this crate.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testudo_init::{Backoff, Event, EventKind, InitOptions, RunningSystem};
use testudo_plan::plan::*;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_testudo-log"))
        .parent()
        .expect("binary dir")
        .to_owned()
}

pub fn route(provider: &str, capability: &str, interface: &str, allow: &[&str]) -> Route {
    Route {
        component: provider.into(),
        capability: capability.into(),
        interface: interface.into(),
        rights: Rights::ReadWrite,
        allow: allow.iter().map(|a| a.to_string()).collect(),
    }
}

pub struct ComponentBuilder(pub PlanComponent);

pub fn component(kind: ComponentKind, binary: &str) -> ComponentBuilder {
    ComponentBuilder(PlanComponent {
        kind,
        role: SandboxRole::default_for(kind, false),
        run: Run::Binary {
            name: binary.into(),
        },
        devices: Devices::default(),
        provides: BTreeMap::new(),
        uses: BTreeMap::new(),
        limits: Limits {
            memory_bytes: 64 << 20,
            cpu_percent: 50,
            restart: RestartPolicy::Never,
            max_tasks: 4,
            cpu_time_ms: 0,
        },
        after: Vec::new(),
        env: BTreeMap::new(),
        args: Vec::new(),
    })
}

impl ComponentBuilder {
    pub fn provides(mut self, capability: &str, interface: &str) -> Self {
        self.0.provides.insert(
            capability.into(),
            Provided {
                interface: interface.into(),
            },
        );
        self
    }
    pub fn uses(mut self, local: &str, route: Route) -> Self {
        self.0.uses.insert(local.into(), route);
        self
    }
    pub fn args(mut self, args: &[&str]) -> Self {
        self.0.args = args.iter().map(|a| a.to_string()).collect();
        self
    }
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.0.limits.restart = policy;
        self
    }
    pub fn network(mut self) -> Self {
        self.0.devices.network = true;
        self.0.role = SandboxRole::NetDriver;
        self
    }
    pub fn role(mut self, role: SandboxRole) -> Self {
        self.0.role = role;
        self
    }
    pub fn memory(mut self, bytes: u64) -> Self {
        self.0.limits.memory_bytes = bytes;
        self
    }
}

pub fn log_driver() -> PlanComponent {
    component(ComponentKind::Driver, "testudo-log")
        .provides("log", "log")
        .restart(RestartPolicy::Always)
        .0
}

pub fn plan(components: Vec<(&str, PlanComponent)>) -> Plan {
    Plan::for_development_host(
        "test",
        components.into_iter().map(|(n, c)| (n.to_owned(), c)),
    )
}

/// Starts `plan`; the returned tempdir holds the state and must outlive the system.
pub fn start(plan: Plan, backoff: Option<Backoff>) -> (RunningSystem, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("state dir");
    let mut options = InitOptions::new(
        bin_dir(),
        state.path().join("state"),
        state.path().join("data"),
        state.path().to_owned(),
    );
    options.stop_grace = Duration::from_millis(500);
    if let Some(backoff) = backoff {
        options.backoff = backoff;
    }
    let system = RunningSystem::start(plan, options).expect("supervisor starts");
    (system, state)
}

pub fn wait(system: &RunningSystem, what: &str, predicate: impl FnMut(&Event) -> bool) -> Event {
    match system.events.wait_for(WAIT, predicate) {
        Some(event) => event,
        None => panic!(
            "timed out waiting for {what}; events:\n{}",
            system
                .events
                .snapshot()
                .iter()
                .map(Event::line)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

pub fn started_pid(system: &RunningSystem, component: &str) -> i32 {
    match wait(system, &format!("{component} started"), |e| {
        e.component == component && matches!(e.kind, EventKind::Started { .. })
    })
    .kind
    {
        EventKind::Started { pid, .. } => pid,
        _ => unreachable!(),
    }
}

pub fn output_line(system: &RunningSystem, component: &str, needle: &str) -> String {
    match wait(system, &format!("{component} printing {needle:?}"), |e| {
        e.component == component
            && matches!(&e.kind, EventKind::Output { line } if line.contains(needle))
    })
    .kind
    {
        EventKind::Output { line } => line,
        _ => unreachable!(),
    }
}

/// Waits until `count` events match `predicate`.
pub fn wait_count(
    system: &RunningSystem,
    what: &str,
    count: usize,
    predicate: impl Fn(&Event) -> bool,
) {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if system
            .events
            .snapshot()
            .iter()
            .filter(|e| predicate(e))
            .count()
            >= count
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "timed out waiting for {what}; events:\n{}",
        system
            .events
            .snapshot()
            .iter()
            .map(Event::line)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
