//! Relaying app deployments from the device twin to init, and init's account back to the
//! twin. The agent is an untrusted transport here: it reads each slot's token from the
//! desired properties (`testudo_deployment::twin`), writes it into a session on its
//! `deployment` route (init's capability), fetches the module only when init — having
//! verified the token — asks for it ([`crate::module_fetch`], through the `net` route),
//! streams it to init, and reports what init says in `$edgeAgent`'s shape: each slot's
//! report and `lastDesiredVersion`/`lastDesiredStatus`.
//!
//! The slots' state is reported again whenever it changes (an app restarted, stopped or
//! failed; [`DeploymentRelay::report_changes`], polled by the component) and after every
//! (re)connection.
//!
//! A token is relayed once per agent run (a full twin after a reconnect brings the same
//! tokens again; init would answer `unchanged` anyway). After a restart of the agent each
//! token is relayed again and init says what is already installed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::ClientConfig;
use serde_json::Value;
use testudo_deployment::session::MAX_STATE_BYTES;
use testudo_deployment::twin::{self, DesiredStatus, SlotReport};
use testudo_deployment::SessionState;
use testudo_error_chain::error_chain;
use testudo_scheme::{Handle, Rights};

use crate::component_log::ComponentLog;
use crate::dial::Dialer;
use crate::error::{AgentError, Result};
use crate::module_fetch::{fetch_module, ModuleRequest};
use crate::twin::Properties;
use crate::AgentHandle;

/// How often a session's state is read while init applies it.
const POLL: Duration = Duration::from_millis(20);

/// Waits before relaying a token again after a failure on the way (not a decision of init):
/// growing, then given up until the next desired change or agent start.
pub const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(2),
    Duration::from_secs(8),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

/// Longest a session may take after the module is handed over (switch and health check).
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// The relay: init's `deployment` route, and what is needed to fetch modules.
#[derive(Debug)]
pub struct DeploymentRelay {
    route: Handle,
    log: Arc<ComponentLog>,
    /// The token last relayed per slot.
    relayed: Mutex<BTreeMap<String, String>>,
    /// The slots as last reported.
    reported: Mutex<BTreeMap<String, SlotReport>>,
}

/// What a module download goes through: the `net` route and the TLS trust of the image.
#[derive(Clone)]
pub struct Fetcher {
    /// Dials through the `net` route.
    pub dialer: Arc<dyn Dialer>,
    /// TLS trust for artifact servers (the image's trust anchors).
    pub tls: Arc<ClientConfig>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

/// A session handle as the download's sink: each write goes to init.
struct SessionSink<'a>(&'a Handle);

impl std::io::Write for SessionSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(std::io::Error::other)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl DeploymentRelay {
    /// A relay over init's `deployment` route.
    pub fn new(route: Handle, log: Arc<ComponentLog>) -> DeploymentRelay {
        DeploymentRelay {
            route,
            log,
            relayed: Mutex::new(BTreeMap::new()),
            reported: Mutex::new(BTreeMap::new()),
        }
    }

    /// Every slot's report, as init publishes it (empty when init cannot be read).
    pub fn slot_reports(&self) -> BTreeMap<String, SlotReport> {
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; MAX_STATE_BYTES];
        while bytes.len() < 16 * MAX_STATE_BYTES {
            match self.route.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        serde_json::from_slice(bytes.trim_ascii_end()).unwrap_or_default()
    }

    /// The tokens of `desired` not relayed yet in this run, by slot; entries that are not
    /// tokens are logged and answered with a 400 report.
    pub fn new_tokens(
        &self,
        agent: &AgentHandle,
        version: u64,
        desired: &Properties,
    ) -> Vec<(String, String)> {
        let mut relayed = self.relayed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut fresh = Vec::new();
        for entry in twin::desired_deployments(desired) {
            match entry {
                Ok(entry) => {
                    if relayed.get(&entry.slot) != Some(&entry.token) {
                        relayed.insert(entry.slot.clone(), entry.token.clone());
                        fresh.push((entry.slot, entry.token));
                    }
                }
                Err(error) => {
                    let description = error.to_string();
                    self.log.line(&format!("app deployments: {description}"));
                    self.report(
                        agent,
                        version,
                        &DesiredStatus {
                            code: 400,
                            description,
                        },
                    );
                }
            }
        }
        fresh
    }

    /// Relays `token` into `slot` and reports each step init takes, until it is decided. A
    /// relay that failed on the way (the module could not be fetched, init could not be
    /// reached) is reported and tried again after [`RETRY_DELAYS`], as long as the token is
    /// still the slot's latest; what init decided (refused, applied, rolled back) is final.
    pub async fn relay(
        self: Arc<Self>,
        agent: AgentHandle,
        fetcher: Option<Fetcher>,
        version: u64,
        slot: String,
        token: String,
    ) {
        let mut retries = RETRY_DELAYS.iter();
        loop {
            let outcome = self
                .relay_steps(&agent, fetcher.clone(), version, &slot, &token)
                .await;
            let (status, retry) = match outcome {
                Ok(status) => (status, None),
                Err(error) => {
                    let retry = retries.next();
                    let mut description = error_chain(&error);
                    if let Some(delay) = retry {
                        description.push_str(&format!("; trying again in {} s", delay.as_secs()));
                    }
                    (
                        DesiredStatus {
                            code: 500,
                            description,
                        },
                        retry,
                    )
                }
            };
            self.log.line(&format!(
                "app deployments: slot {slot}: {} {}",
                status.code, status.description
            ));
            self.report(&agent, version, &status);
            let Some(delay) = retry else {
                return;
            };
            tokio::time::sleep(*delay).await;
            let latest = self
                .relayed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&slot)
                .is_some_and(|latest| *latest == token);
            if !latest {
                return;
            }
        }
    }

    async fn relay_steps(
        &self,
        agent: &AgentHandle,
        fetcher: Option<Fetcher>,
        version: u64,
        slot: &str,
        token: &str,
    ) -> Result<DesiredStatus> {
        let failed = |step: &'static str| {
            move |source: testudo_scheme::SchemeError| AgentError::RelayDeployment {
                slot: slot.to_owned(),
                step,
                source: Some(Box::new(source)),
            }
        };
        let session = self
            .route
            .open(slot, Rights::ReadWrite)
            .map_err(failed("opening a session with init"))?;
        session
            .write_all(token.as_bytes())
            .map_err(failed("writing the token to init"))?;
        let mut state = read_state(slot, &session)?;
        if let SessionState::WantsModule { url, size, sha256 } = &state {
            self.log.line(&format!(
                "app deployments: slot {slot}: fetching {size} bytes from {url}"
            ));
            let Some(fetcher) = fetcher else {
                return Err(AgentError::RelayDeployment {
                    slot: slot.to_owned(),
                    step: "fetching the module: the agent has no net route",
                    source: None,
                });
            };
            let request = ModuleRequest {
                url,
                size: *size,
                sha256,
            };
            let mut sink = SessionSink(&session);
            let mut reported_share = 0;
            let log = Arc::clone(&self.log);
            let progress = move |received: u64, total: u64| {
                let share = received.saturating_mul(4) / total.max(1);
                if share > reported_share {
                    reported_share = share;
                    log.line(&format!("app deployments: {received} of {total} bytes"));
                }
            };
            let fetched =
                fetch_module(fetcher.dialer, fetcher.tls, &request, &mut sink, progress).await;
            if let Err(error) = fetched {
                // Dropping the session discards what init received.
                return Err(AgentError::RelayDeployment {
                    slot: slot.to_owned(),
                    step: "fetching the module",
                    source: Some(Box::new(error)),
                });
            }
            session
                .fsync()
                .map_err(failed("handing the module to init"))?;
            state = read_state(slot, &session)?;
        }
        let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
        let mut reported = None;
        loop {
            if let Some(status) = state.desired_status() {
                if state.is_final() {
                    return Ok(status);
                }
                if reported.as_ref() != Some(&state) {
                    self.report(agent, version, &status);
                    reported = Some(state.clone());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AgentError::RelayDeployment {
                    slot: slot.to_owned(),
                    step: "waiting for init to apply the deployment (gave up)",
                    source: None,
                });
            }
            tokio::time::sleep(POLL).await;
            state = read_state(slot, &session)?;
        }
    }

    /// Reports every slot and the last desired version's status.
    pub fn report(&self, agent: &AgentHandle, version: u64, status: &DesiredStatus) {
        let slots = self.slot_reports();
        let patch: Value = twin::reported_patch(&slots, version, status);
        self.queue(agent, &patch, slots);
    }

    /// Reports the slots if anything about them changed since the last report (an app
    /// restarted, stopped or failed): called periodically, and after every (re)connection
    /// (`force`).
    pub fn report_changes(&self, agent: &AgentHandle, force: bool) {
        let slots = self.slot_reports();
        if slots.is_empty() {
            return;
        }
        let changed =
            force || *self.reported.lock().unwrap_or_else(PoisonError::into_inner) != slots;
        if changed {
            let patch = twin::slots_patch(&slots);
            self.queue(agent, &patch, slots);
        }
    }

    fn queue(&self, agent: &AgentHandle, patch: &Value, slots: BTreeMap<String, SlotReport>) {
        *self.reported.lock().unwrap_or_else(PoisonError::into_inner) = slots;
        if let Err(error) = agent.queue_report(patch) {
            self.log.line(&format!(
                "app deployments: reporting failed: {}",
                error_chain(&error)
            ));
        }
    }
}

/// Reads `slot`'s session state.
fn read_state(slot: &str, session: &Handle) -> Result<SessionState> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| AgentError::RelayDeployment {
        slot: slot.to_owned(),
        step: "reading init's answer",
        source: Some(source),
    };
    let mut buf = vec![0u8; MAX_STATE_BYTES];
    let n = session.read(&mut buf).map_err(|e| failed(Box::new(e)))?;
    SessionState::from_line(&buf[..n]).map_err(|e| failed(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use testudo_deployment::twin::{RuntimeStatus, DEPLOYMENT};
    use testudo_scheme::{Errno, Grant, NodeKind, Opened, SchemeProvider, Server};

    use super::*;
    use crate::handle::Command;
    use crate::queue::Payload;

    /// Init's `deployment` capability as the relay sees it: the slots' reports on the root
    /// handle, and per token the states a session goes through (the last one repeats).
    #[derive(Clone, Default)]
    struct FakeInit {
        slots: Arc<Mutex<BTreeMap<String, SlotReport>>>,
        answers: BTreeMap<String, Vec<SessionState>>,
        sessions: Arc<Mutex<Vec<String>>>,
    }

    #[derive(Clone)]
    enum Node {
        Root { pending: Option<Vec<u8>> },
        Session { states: VecDeque<SessionState> },
    }

    impl SchemeProvider for FakeInit {
        type Node = Node;

        fn root(&mut self, _grant: &Grant) -> std::result::Result<Node, Errno> {
            Ok(Node::Root { pending: None })
        }

        fn open(
            &mut self,
            _parent: &Node,
            path: &str,
            _rights: Rights,
        ) -> std::result::Result<Opened<Node>, Errno> {
            self.sessions.lock().unwrap().push(path.to_owned());
            Ok(Opened::Node(Node::Session {
                states: VecDeque::from([SessionState::Idle]),
            }))
        }

        fn read(&mut self, node: &mut Node, buf: &mut [u8]) -> std::result::Result<usize, Errno> {
            let bytes = match node {
                Node::Root { pending } => {
                    let slots = serde_json::to_vec(&*self.slots.lock().unwrap()).unwrap();
                    let rest = pending.get_or_insert(slots);
                    let n = rest.len().min(buf.len());
                    let chunk: Vec<u8> = rest.drain(..n).collect();
                    if n == 0 {
                        *pending = None;
                    }
                    chunk
                }
                Node::Session { states } => {
                    let state = if states.len() > 1 {
                        states.pop_front().unwrap()
                    } else {
                        states[0].clone()
                    };
                    state.to_line()
                }
            };
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok(bytes.len())
        }

        fn write(&mut self, node: &mut Node, data: &[u8]) -> std::result::Result<usize, Errno> {
            let Node::Session { states } = node else {
                return Err(Errno::EBADF);
            };
            let token = String::from_utf8_lossy(data).into_owned();
            *states = self.answers.get(&token).cloned().unwrap_or_default().into();
            Ok(data.len())
        }

        fn fstat(&mut self, _node: &Node) -> std::result::Result<(NodeKind, u64), Errno> {
            Ok((NodeKind::File, 0))
        }
    }

    /// A relay over a served `init`, and the agent's queue of reports.
    fn relay(
        init: FakeInit,
    ) -> (
        Arc<DeploymentRelay>,
        AgentHandle,
        tokio::sync::mpsc::UnboundedReceiver<Command>,
    ) {
        let mut server = Server::new(init);
        let route = server
            .grant(&Grant {
                consumer: "agent".into(),
                capability: "deployment".into(),
                rights: Rights::ReadWrite,
                allow: Vec::new(),
            })
            .unwrap();
        std::thread::spawn(move || server.run());
        let (commands, queued) = tokio::sync::mpsc::unbounded_channel();
        let agent = AgentHandle {
            commands,
            device_id: "gw".into(),
        };
        let relay = DeploymentRelay::new(route, Arc::new(ComponentLog::default()));
        (Arc::new(relay), agent, queued)
    }

    /// The reported patches queued so far.
    fn reports(queued: &mut tokio::sync::mpsc::UnboundedReceiver<Command>) -> Vec<Value> {
        let mut patches = Vec::new();
        while let Ok(command) = queued.try_recv() {
            if let Command::Enqueue(item) = command {
                if let Payload::Reported(bytes) = item.payload {
                    patches.push(serde_json::from_slice(&bytes).unwrap());
                }
            }
        }
        patches
    }

    fn desired(entries: Value) -> Properties {
        serde_json::json!({ twin::APPS: entries })
            .as_object()
            .unwrap()
            .clone()
    }

    fn report(status: RuntimeStatus, restarts: u32) -> SlotReport {
        SlotReport {
            app: Some("sensor-reader".into()),
            version: Some("1.0.0".into()),
            sha256: None,
            serial: Some(1),
            runtime_status: status,
            restart_count: restarts,
            exit_code: None,
            last_result: None,
        }
    }

    #[tokio::test]
    async fn a_token_is_relayed_once_and_an_entry_that_is_not_one_is_answered_400() {
        let (relay, agent, mut queued) = relay(FakeInit::default());
        let twin = desired(serde_json::json!({
            "cloud-app": { DEPLOYMENT: "token-1" },
            "other": { DEPLOYMENT: 5 },
        }));
        assert_eq!(
            relay.new_tokens(&agent, 3, &twin),
            [("cloud-app".to_owned(), "token-1".to_owned())]
        );
        let patches = reports(&mut queued);
        assert_eq!(patches.len(), 1, "{patches:?}");
        assert_eq!(patches[0][twin::APPS]["lastDesiredStatus"]["code"], 400);
        assert_eq!(patches[0][twin::APPS]["lastDesiredVersion"], 3);
        // The same twin again (a reconnect's full twin): nothing new to relay.
        assert!(relay.new_tokens(&agent, 3, &twin).is_empty());
        let changed = desired(serde_json::json!({ "cloud-app": { DEPLOYMENT: "token-2" } }));
        assert_eq!(
            relay.new_tokens(&agent, 4, &changed),
            [("cloud-app".to_owned(), "token-2".to_owned())]
        );
    }

    #[tokio::test]
    async fn what_init_decides_is_reported_as_it_is() {
        let refused = SessionState::Refused {
            code: 400,
            description: "signature: not made by a known key".into(),
        };
        let init = FakeInit {
            answers: BTreeMap::from([("token-1".to_owned(), vec![refused])]),
            ..FakeInit::default()
        };
        let sessions = Arc::clone(&init.sessions);
        let (relay, agent, mut queued) = relay(init);
        relay
            .relay(agent, None, 7, "cloud-app".into(), "token-1".into())
            .await;
        assert_eq!(
            *sessions.lock().unwrap(),
            ["cloud-app"],
            "one session, no retry"
        );
        let patches = reports(&mut queued);
        let last = &patches.last().unwrap()[twin::APPS];
        assert_eq!(last["lastDesiredVersion"], 7);
        assert_eq!(last["lastDesiredStatus"]["code"], 400);
        assert_eq!(
            last["lastDesiredStatus"]["description"],
            "signature: not made by a known key"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_on_the_way_is_tried_again_with_growing_delays_then_given_up() {
        // Init wants the module, but this agent has no `net` route to fetch it with.
        let wants = SessionState::WantsModule {
            url: "https://hub.invalid/m.wasm".into(),
            size: 10,
            sha256: "0".repeat(64),
        };
        let init = FakeInit {
            answers: BTreeMap::from([("token-1".to_owned(), vec![wants])]),
            ..FakeInit::default()
        };
        let sessions = Arc::clone(&init.sessions);
        let (relay, agent, mut queued) = relay(init);
        // The token must be the slot's latest for the retries to go on.
        relay.new_tokens(
            &agent,
            1,
            &desired(serde_json::json!({ "cloud-app": { DEPLOYMENT: "token-1" } })),
        );
        let started = tokio::time::Instant::now();
        Arc::clone(&relay)
            .relay(agent, None, 1, "cloud-app".into(), "token-1".into())
            .await;
        let waited: Duration = RETRY_DELAYS.iter().sum();
        assert!(started.elapsed() >= waited, "{:?}", started.elapsed());
        assert_eq!(sessions.lock().unwrap().len(), 1 + RETRY_DELAYS.len());
        let statuses: Vec<String> = reports(&mut queued)
            .iter()
            .map(|patch| {
                patch[twin::APPS]["lastDesiredStatus"]["description"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(statuses.len(), 1 + RETRY_DELAYS.len());
        assert!(
            statuses[0].ends_with("trying again in 2 s"),
            "{}",
            statuses[0]
        );
        assert!(
            statuses[4].ends_with("trying again in 600 s"),
            "{}",
            statuses[4]
        );
        assert!(!statuses[5].contains("trying again"), "{}", statuses[5]);
        assert!(statuses[5].contains("no net route"), "{}", statuses[5]);
    }

    #[tokio::test]
    async fn slots_are_reported_when_they_change_or_when_asked() {
        let init = FakeInit::default();
        let slots = Arc::clone(&init.slots);
        let (relay, agent, mut queued) = relay(init);
        relay.report_changes(&agent, false);
        assert!(reports(&mut queued).is_empty(), "no slots: nothing to say");
        slots
            .lock()
            .unwrap()
            .insert("cloud-app".into(), report(RuntimeStatus::Running, 0));
        relay.report_changes(&agent, false);
        relay.report_changes(&agent, false);
        let patches = reports(&mut queued);
        assert_eq!(patches.len(), 1, "{patches:?}");
        assert_eq!(
            patches[0][twin::APPS]["cloud-app"]["runtimeStatus"],
            "running"
        );
        slots
            .lock()
            .unwrap()
            .insert("cloud-app".into(), report(RuntimeStatus::Backoff, 1));
        relay.report_changes(&agent, false);
        let patches = reports(&mut queued);
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0][twin::APPS]["cloud-app"]["restartCount"], 1);
        // After a reconnect the slots are reported even though nothing changed.
        relay.report_changes(&agent, true);
        assert_eq!(reports(&mut queued).len(), 1);
    }
}
