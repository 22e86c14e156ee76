//! Supervision of one app slot: the restart policy, and hot swap with rollback.
//!
//! Exactly one version of the app is active at any time. [`Supervisor::swap`]:
//! 1. links the new version against the slot's grants and instantiates it once in a scratch
//!    store (imports, memory limits, start function) — failure leaves the old one running;
//! 2. stops the old version, starts the new one and watches it for a grace period;
//! 3. if the new version fails (trap, limit, non-zero exit) inside the grace period, it is
//!    stopped and the old version is started again.
//!
//! It returns only once one of the two is running, so nothing is ever half-switched.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testudo_plan::plan::RestartPolicy;

use crate::error::HostError;
use crate::limits::LimitExceeded;
use crate::run::{Outcome, PreparedApp, RunContext, StopSignal};

/// First delay before a restart; doubled per consecutive failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Whether `policy` restarts an app that ended with `outcome`.
pub fn should_restart(policy: RestartPolicy, outcome: &Outcome) -> bool {
    match (policy, outcome) {
        (_, Outcome::Limit(LimitExceeded::Stopped)) => false,
        (_, Outcome::ImportNotGranted { .. }) => false,
        (RestartPolicy::Always, _) => true,
        (RestartPolicy::OnFailure, outcome) => !outcome.is_success(),
        (RestartPolicy::Never, _) => false,
    }
}

/// Delay before restart number `failures` (1-based).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// One run of one version ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEvent {
    /// Which start of the slot this was (increases with every swap and rollback).
    pub generation: u64,
    /// The version's app name.
    pub app: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// Whether the policy restarts it.
    pub restarting: bool,
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapResult {
    /// The new version runs; the old one is gone.
    Swapped,
    /// The new version was refused before the old one stopped; the old one kept running.
    Refused(String),
    /// The new version failed within the grace period; the old one runs again.
    RolledBack(String),
}

struct Running {
    app: Arc<PreparedApp>,
    stop: StopSignal,
    thread: JoinHandle<()>,
}

/// Runs one app slot on its own thread under a restart policy.
pub struct Supervisor {
    context: RunContext,
    events: Receiver<AppEvent>,
    sender: Sender<AppEvent>,
    running: Option<Running>,
    generation: u64,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts `app` with `context` (its `stop` is replaced per start).
    pub fn start(app: PreparedApp, context: RunContext) -> Result<Self, HostError> {
        let (sender, events) = mpsc::channel();
        let mut supervisor = Self {
            context,
            events,
            sender,
            running: None,
            generation: 0,
        };
        supervisor.launch(Arc::new(app))?;
        Ok(supervisor)
    }

    /// The name of the active version.
    pub fn active(&self) -> Option<&str> {
        self.running.as_ref().map(|running| running.app.name())
    }

    /// The active generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The next ended run, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<AppEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Whether the active version's thread has finished (its policy gave up on it).
    pub fn is_finished(&self) -> bool {
        self.running
            .as_ref()
            .is_none_or(|running| running.thread.is_finished())
    }

    /// Blocks until the active version ends for good; returns its last outcome.
    pub fn wait(mut self) -> Option<Outcome> {
        let mut last = None;
        loop {
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(event) if event.generation == self.generation => {
                    let done = !event.restarting;
                    last = Some(event.outcome);
                    if done {
                        break;
                    }
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if self.is_finished() && last.is_some() => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(running) = self.running.take() {
            // The thread sent its last event; joining only collects it.
            let _ = running.thread.join();
        }
        last
    }

    /// Stops the active version and waits for its thread.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.stop();
            // A panicked app thread has already reported nothing more to clean up.
            let _ = running.thread.join();
        }
    }

    /// Replaces the active version with `new` (see the module docs), watching it for `grace`.
    pub fn swap(&mut self, new: PreparedApp, grace: Duration) -> SwapResult {
        let check = new.instantiate_only(&RunContext {
            stop: StopSignal::new(),
            ..self.context.clone()
        });
        match check {
            Ok(outcome) if outcome.is_success() => {}
            Ok(outcome) => {
                return SwapResult::Refused(outcome.reason().unwrap_or_else(|| {
                    format!("health check exited with {}", outcome.exit_code())
                }))
            }
            Err(error) => return SwapResult::Refused(error.to_string()),
        }
        let Some(old) = self
            .running
            .as_ref()
            .map(|running| Arc::clone(&running.app))
        else {
            return match self.launch(Arc::new(new)) {
                Ok(()) => SwapResult::Swapped,
                Err(error) => SwapResult::Refused(error.to_string()),
            };
        };
        self.stop();
        if let Err(error) = self.launch(Arc::new(new)) {
            return self.roll_back(old, error.to_string());
        }
        let generation = self.generation;
        let deadline = Instant::now() + grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return SwapResult::Swapped;
            }
            match self.events.recv_timeout(left) {
                Ok(event) if event.generation == generation && !event.outcome.is_success() => {
                    let reason = event
                        .outcome
                        .reason()
                        .unwrap_or_else(|| format!("exited with {}", event.outcome.exit_code()));
                    self.stop();
                    return self.roll_back(old, reason);
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return SwapResult::Swapped,
            }
        }
    }

    fn roll_back(&mut self, old: Arc<PreparedApp>, reason: String) -> SwapResult {
        match self.launch(old) {
            Ok(()) => SwapResult::RolledBack(reason),
            Err(error) => SwapResult::RolledBack(format!(
                "{reason}; restarting the old version failed: {error}"
            )),
        }
    }

    fn launch(&mut self, app: Arc<PreparedApp>) -> Result<(), HostError> {
        self.generation += 1;
        let generation = self.generation;
        let stop = StopSignal::new();
        let context = RunContext {
            stop: stop.clone(),
            ..self.context.clone()
        };
        let sender = self.sender.clone();
        let thread_app = Arc::clone(&app);
        let thread = std::thread::Builder::new()
            .name(format!("app-{}", app.name()))
            .spawn(move || run_with_policy(&thread_app, &context, generation, &sender))
            .map_err(|source| HostError::Spawn {
                app: app.name().to_owned(),
                source,
            })?;
        self.running = Some(Running { app, stop, thread });
        Ok(())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_with_policy(
    app: &PreparedApp,
    context: &RunContext,
    generation: u64,
    events: &Sender<AppEvent>,
) {
    let mut failures = 0;
    loop {
        let started = Instant::now();
        let outcome = app
            .run(context)
            .unwrap_or_else(|error| Outcome::Trap(error.to_string()));
        let restarting =
            !context.stop.is_raised() && should_restart(context.limits.restart, &outcome);
        if let Some(reason) = outcome.reason() {
            eprintln!("testudo-wasm-host: app {}: {reason}", app.name());
        }
        let success = outcome.is_success();
        // The receiver may be gone (supervisor dropped): nothing left to tell.
        let _ = events.send(AppEvent {
            generation,
            app: app.name().to_owned(),
            outcome,
            restarting,
        });
        if !restarting {
            return;
        }
        failures = if success || started.elapsed() > Duration::from_secs(10) {
            1
        } else {
            failures + 1
        };
        let pause = backoff(failures);
        let resume = Instant::now() + pause;
        while Instant::now() < resume {
            if context.stop.is_raised() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10).min(pause));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_restarts() {
        let trap = Outcome::Trap("unreachable".into());
        assert!(should_restart(RestartPolicy::Always, &Outcome::Exited(0)));
        assert!(should_restart(RestartPolicy::OnFailure, &trap));
        assert!(!should_restart(
            RestartPolicy::OnFailure,
            &Outcome::Exited(0)
        ));
        assert!(!should_restart(RestartPolicy::Never, &trap));
        assert!(!should_restart(
            RestartPolicy::Always,
            &Outcome::Limit(LimitExceeded::Stopped)
        ));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
