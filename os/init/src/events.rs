//! What the supervisor reports: a shared, append-only event log that tests and the CLI
//! observe, optionally echoed as lines on stderr.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use testudo_sandbox::RuntimeReport;

/// One thing that happened to a component.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The process exec'd inside its sandbox.
    Started {
        /// Host pid.
        pid: i32,
        /// What is enforced on it.
        report: Box<RuntimeReport>,
    },
    /// A line the component printed (stdout or stderr).
    Output {
        /// The line, without newline.
        line: String,
    },
    /// It exited with a status code.
    Exited {
        /// Exit code.
        code: i32,
    },
    /// It was killed by a signal.
    Signaled {
        /// Signal number.
        signal: i32,
    },
    /// It was killed by its seccomp filter for a syscall outside its role's allowlist.
    SeccompDenied {
        /// The seccomp role.
        role: String,
    },
    /// Starting it failed.
    LaunchFailed {
        /// Why.
        error: String,
    },
    /// It will be restarted after a delay.
    Restarting {
        /// Delay in milliseconds.
        delay_ms: u64,
        /// Restarts within the crash-loop window so far.
        attempt: u32,
    },
    /// Stopped because a dependency is restarting; starts again after it.
    StoppedForDependency {
        /// The dependency.
        dependency: String,
    },
    /// Given up on: crash loop, or a dependency failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Not started at all (e.g. the WASM host binary is missing).
    NotStarted {
        /// Why.
        reason: String,
    },
    /// What happened to an app slot's deployments (component = the slot; `init` for all).
    Slot {
        /// What, in one line.
        message: String,
    },
    /// Which mechanism enforces components' memory/task/cpu limits (component = `init`),
    /// reported once at start.
    Limits {
        /// `cgroup-v2` or `rlimits`.
        mechanism: String,
        /// The cgroup tree and its controllers, or why cgroup v2 is not used.
        detail: String,
    },
    /// Every startable component is up (component = `init`).
    Ready {
        /// Names of the running components.
        components: Vec<String>,
    },
    /// It was stopped by the shutdown (SIGTERM, or SIGKILL after the grace period).
    Stopped {
        /// Whether it had to be killed.
        killed: bool,
    },
    /// Shutdown finished; no component process is left (component = `init`).
    ShutdownComplete,
    /// The component asked init's `power` capability to reboot or power off.
    PowerRequested {
        /// `reboot` or `poweroff`.
        action: String,
    },
    /// The component wrote something to `power` that is not a request.
    PowerRefused {
        /// What it wrote (at most 64 bytes, lossy UTF-8).
        request: String,
    },
}

/// An event with the component it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Component name (`init` for system-wide events).
    pub component: String,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// One-line human form.
    pub fn line(&self) -> String {
        let c = &self.component;
        match &self.kind {
            EventKind::Started { pid, report } => format!(
                "{c}: started (pid {pid}, seccomp {} {}/{} syscalls, handles [{}], limits {} [{}])",
                report.role,
                report.syscalls_allowed,
                report.syscalls_total,
                report.handles.join(", "),
                report.limits,
                report.limit_settings.join(" ")
            ),
            EventKind::Output { line } => format!("{c}| {line}"),
            EventKind::Exited { code } => format!("{c}: exited with status {code}"),
            EventKind::Signaled { signal } => format!("{c}: killed by signal {signal}"),
            EventKind::SeccompDenied { role } => {
                format!("{c}: denied: killed by seccomp (SIGSYS) for a syscall outside the {role} allowlist")
            }
            EventKind::LaunchFailed { error } => format!("{c}: launch failed: {error}"),
            EventKind::Restarting { delay_ms, attempt } => {
                format!("{c}: restarting in {delay_ms} ms (restart {attempt})")
            }
            EventKind::StoppedForDependency { dependency } => {
                format!("{c}: stopped while its dependency {dependency} restarts")
            }
            EventKind::Failed { reason } => format!("{c}: failed: {reason}"),
            EventKind::NotStarted { reason } => format!("{c}: not started: {reason}"),
            EventKind::Slot { message } => format!("{c}: app slot: {message}"),
            EventKind::Limits { mechanism, detail } => {
                format!("{c}: resource limits: {mechanism}: {detail}")
            }
            EventKind::Ready { components } => format!("ready: {}", components.join(" ")),
            EventKind::Stopped { killed: false } => format!("{c}: stopped"),
            EventKind::Stopped { killed: true } => {
                format!("{c}: stopped (killed after the grace period)")
            }
            EventKind::ShutdownComplete => "stopped: all components exited".to_owned(),
            EventKind::PowerRequested { action } => format!("{c}: power: {action} requested"),
            EventKind::PowerRefused { request } => {
                format!("{c}: power: refused {request:?} (only reboot or poweroff)")
            }
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
}

/// The shared event log.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    shared: Arc<Shared>,
    echo: bool,
}

impl EventLog {
    /// A log that also prints every event line to stderr when `echo`.
    pub fn new(echo: bool) -> EventLog {
        EventLog {
            shared: Arc::default(),
            echo,
        }
    }

    /// Appends an event.
    pub fn push(&self, component: &str, kind: EventKind) {
        let event = Event {
            component: component.to_owned(),
            kind,
        };
        if self.echo {
            eprintln!("testudo-init: {}", event.line());
        }
        self.shared
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        self.shared.changed.notify_all();
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `timeout` for an event matching `predicate` (including past ones).
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut predicate: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut events = self
            .shared
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(found) = events.iter().find(|event| predicate(event)) {
                return Some(found.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            events = self
                .shared
                .changed
                .wait_timeout(events, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
