//! Runs `testudo-agent` as a component the way `testudo-init` does: the sandbox spec from
//! `testudo_init::launch::spec_for` (its own namespaces, seccomp role `agent`, no network),
//! routed handles to real scheme providers (log capture, the storage and net drivers'
//! providers, served on threads of this test process), and a provider control socket on
//! which the test, like init, sends root handles for apps' `telemetry` and `identity` routes.

#![allow(clippy::unwrap_used)] // test support code: a failed setup step is a failed test
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testudo_drivers::net::NetProvider;
use testudo_drivers::storage::StorageProvider;
use testudo_drivers::tpm::TpmProvider;
use testudo_init::launch::{spec_for, LaunchContext, LaunchFds};
use testudo_init::InitOptions;
use testudo_plan::plan::*;
use testudo_scheme::{
    handle_pair, send_grant, Errno, Grant, Handle, NodeKind, Opened, SchemeProvider, Server,
};

/// Captures log lines, prefixed with the consumer's name like the log driver.
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<Mutex<Vec<String>>>);

impl SchemeProvider for LogCapture {
    type Node = String;
    fn root(&mut self, grant: &Grant) -> Result<String, Errno> {
        Ok(grant.consumer.clone())
    }
    fn open(
        &mut self,
        _: &String,
        _: &str,
        _: testudo_scheme::Rights,
    ) -> Result<Opened<String>, Errno> {
        Err(Errno::ENOENT)
    }
    fn write(&mut self, node: &mut String, data: &[u8]) -> Result<usize, Errno> {
        let text = String::from_utf8_lossy(data);
        let mut lines = self.0.lock().unwrap();
        for line in text.lines().filter(|l| !l.is_empty()) {
            lines.push(format!("[{node}] {line}"));
        }
        Ok(data.len())
    }
    fn fstat(&mut self, _: &String) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, 0))
    }
}

/// Serves the provider `make` builds on a thread (providers need not be `Send`); returns the
/// agent's root handle for `capability`.
fn serve<P: SchemeProvider + 'static>(
    make: impl FnOnce() -> P + Send + 'static,
    capability: &str,
    allow: &[String],
) -> OwnedFd {
    let grant = Grant {
        consumer: "agent".into(),
        capability: capability.into(),
        rights: testudo_scheme::Rights::ReadWrite,
        allow: allow.to_vec(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // Ends when the agent's last handle to it closes.
    std::thread::spawn(move || {
        let mut server = Server::new(make());
        let handle = server.grant(&grant).unwrap();
        tx.send(handle.into_fd()).unwrap();
        let _ = server.run();
    });
    rx.recv().unwrap()
}

/// What the agent's plan says.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub hub: String,
    pub device_id: String,
    pub port: u16,
    pub log: LogCapture,
    /// The plan's `cloud.identity` (default `sas`).
    pub identity: String,
    /// A swtpm `unixio` socket: the agent gets a `tpm` route to a `tpm` provider on it.
    pub tpm_socket: Option<PathBuf>,
    /// init's power requests: the agent gets a `power` route to init's own scheme.
    pub power: Option<testudo_init::PowerRequests>,
    /// The plan's `cloud.model_id`.
    pub model_id: Option<String>,
    /// The plan's `cloud.dps`.
    pub dps: Option<testudo_plan::DpsConfig>,
}

/// A running agent component.
pub struct RunningAgent {
    pub pid: i32,
    pidfd: OwnedFd,
    control: OwnedFd,
}

fn route(provider: &str, capability: &str, interface: &str, allow: &[String]) -> Route {
    Route {
        component: provider.into(),
        capability: capability.into(),
        interface: interface.into(),
        rights: Rights::ReadWrite,
        allow: allow.to_vec(),
    }
}

impl Rig {
    /// A rig whose plan points the agent at `hub:port` (`device_id`, SAS identity).
    pub fn new(hub: &str, device_id: &str, port: u16) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/agent")).unwrap();
        Rig {
            dir,
            hub: hub.into(),
            device_id: device_id.into(),
            port,
            log: LogCapture::default(),
            identity: "sas".into(),
            tpm_socket: None,
            power: None,
            model_id: None,
            dps: None,
        }
    }

    /// Points the agent at DPS on `localhost` with `attestation` under `scope`: `mqtt_port` for
    /// symmetric-key and X.509 attestation, `https_port` for TPM attestation.
    pub fn use_dps(
        &mut self,
        scope: &str,
        attestation: testudo_plan::DpsAttestation,
        mqtt_port: u16,
        https_port: u16,
    ) {
        self.dps = Some(testudo_plan::DpsConfig {
            endpoint: "localhost".into(),
            scope: scope.into(),
            attestation,
            https_port,
            mqtt_port,
        });
    }

    /// The DPS assignment the agent stored, if any (a damaged file fails the test).
    pub fn stored_assignment(&self) -> Option<testudo_agent::provisioning::StoredAssignment> {
        let bytes = std::fs::read(self.storage_dir().join("provisioning.json")).ok()?;
        testudo_agent::provisioning::parse(&bytes).expect("a stored assignment")
    }

    /// The agent's storage directory (the storage provider's `data/agent`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data/agent")
    }

    /// The `net` route's allow list: the hub, and DPS's HTTPS port when the plan has DPS (as
    /// the gateway example's plan allows it).
    fn allow(&self) -> Vec<String> {
        let mut allow = vec![format!("{}:{}", self.hub, self.port)];
        if let Some(dps) = &self.dps {
            allow.push(format!("{}:{}", dps.endpoint, dps.https_port));
        }
        allow
    }

    fn plan(&self) -> Plan {
        let env = BTreeMap::new();
        let agent = PlanComponent {
            kind: ComponentKind::Service,
            role: testudo_plan::SandboxRole::Agent,
            run: Run::Binary {
                name: "testudo-agent".into(),
            },
            devices: Devices::default(),
            provides: [("telemetry", "telemetry"), ("identity", "identity")]
                .into_iter()
                .map(|(c, i)| {
                    (
                        c.to_owned(),
                        Provided {
                            interface: i.into(),
                        },
                    )
                })
                .collect(),
            uses: [
                ("log", route("log", "log", "log", &[])),
                ("storage", route("storage", "storage", "storage", &[])),
                ("net", route("net", "net", "net", &self.allow())),
                ("tpm", route("tpm", "tpm", "tpm", &[])),
            ]
            .into_iter()
            .chain(
                self.power
                    .is_some()
                    .then(|| ("power", route("init", "power", "power", &[]))),
            )
            .filter(|(n, _)| *n != "tpm" || self.tpm_socket.is_some())
            .map(|(n, r)| (n.to_owned(), r))
            .collect(),
            limits: Limits {
                memory_bytes: 64 << 20, // as in the gateway example
                cpu_percent: 50,
                restart: RestartPolicy::Always,
                max_tasks: 32,
                cpu_time_ms: 0,
            },
            after: Vec::new(),
            env,
            args: Vec::new(),
        };
        let mut plan = Plan::for_development_host("agent-test", [("agent".to_owned(), agent)]);
        plan.cloud = CloudConfig {
            hub: self.hub.clone(),
            device_id: self.device_id.clone(),
            identity: self.identity.clone(),
            dps: self.dps.clone(),
            model_id: self.model_id.clone(),
            trust_anchors: None,
            mqtt_port: self.port,
        };
        plan
    }

    /// Starts the agent in its sandbox with fresh handles to fresh providers.
    pub fn start(&self) -> RunningAgent {
        let program = PathBuf::from(env!("CARGO_BIN_EXE_testudo-agent"));
        let bin_dir = program.parent().unwrap().to_owned();
        let options = InitOptions::new(
            bin_dir,
            self.dir.path().join("state"),
            self.dir.path().join("data"),
            self.dir.path().to_owned(),
        );
        let plan = self.plan();
        let component = plan.components["agent"].clone();
        let mut handles = vec![
            ("log".to_owned(), {
                let log = self.log.clone();
                serve(move || log, "log", &[])
            }),
            (
                "net".to_owned(),
                serve(NetProvider::default, "net", &self.allow()),
            ),
            ("storage".to_owned(), {
                let data = self.dir.path().join("data");
                serve(move || StorageProvider::new(&data), "storage", &[])
            }),
        ];
        if let Some(socket) = self.tpm_socket.clone() {
            handles.push((
                "tpm".to_owned(),
                serve(move || TpmProvider::open(&socket).unwrap(), "tpm", &[]),
            ));
        }
        if let Some(requests) = self.power.clone() {
            handles.push(("power".to_owned(), {
                serve(
                    move || {
                        testudo_init::builtin::InitProvider::new(
                            testudo_init::status::StatusProvider::new(Default::default()),
                            requests,
                            testudo_init::EventLog::new(false),
                            no_app_slots(),
                        )
                    },
                    "power",
                    &[],
                )
            }));
        }
        // Like init: sorted by local name (fd 3, 4, ... in that order).
        handles.sort_by(|a, b| a.0.cmp(&b.0));
        let (control, control_child) = handle_pair().unwrap();
        let (out_read, out_write) = std::io::pipe().unwrap();
        let out_write = OwnedFd::from(out_write);
        let stdin = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let stderr = out_write.try_clone().unwrap();
        let plan_file = self.dir.path().join("plan.json");
        std::fs::write(&plan_file, serde_json::to_vec(&plan).unwrap()).unwrap();
        let ctx = LaunchContext {
            plan: &plan,
            name: "agent",
            index: 0,
            options: &options,
            plan_file: &plan_file,
            cgroup: None,
            module_source: None,
        };
        let spec = spec_for(
            &ctx,
            &component,
            program,
            LaunchFds {
                handles,
                control: Some(control_child),
                stdio: [stdin, out_write, stderr],
            },
        )
        .unwrap();
        assert_eq!(spec.role, testudo_plan::SandboxRole::Agent);
        assert!(!spec.network, "the agent must not own the network");
        let prepared = testudo_sandbox::prepare(spec).unwrap();
        let child = testudo_sandbox::spawn(&testudo_sandbox::RealSys, prepared).unwrap();
        let lines = self.log.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(std::fs::File::from(OwnedFd::from(out_read)))
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap().push(format!("(output) {line}"));
            }
        });
        RunningAgent {
            pid: child.pid,
            pidfd: child.pidfd,
            control,
        }
    }

    /// All log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` that appears after the first `skip` lines.
    pub fn wait_line_after(&self, skip: usize, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .lines()
                .into_iter()
                .skip(skip)
                .find(|l| l.contains(needle))
            {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing {needle:?}; log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        self.wait_line_after(0, needle, timeout)
    }
}

impl RunningAgent {
    /// Sends a root handle for `capability` to the agent over its control socket, exactly as
    /// init routes an app's `uses` entry; returns the app's end.
    pub fn route(&self, app: &str, capability: &str, rights: testudo_scheme::Rights) -> Handle {
        let (kept, given) = handle_pair().unwrap();
        send_grant(
            self.control.as_fd(),
            &Grant {
                consumer: app.into(),
                capability: capability.into(),
                rights,
                allow: Vec::new(),
            },
            kept.as_fd(),
        )
        .unwrap();
        Handle::from_fd(given)
    }

    /// Whether the process is still running.
    pub fn running(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid fd owned by self.
        unsafe { libc::poll(&mut pfd, 1, 0) == 0 }
    }

    /// Sends `signal` and reaps the process; returns its wait status (`si_status`, `si_code`).
    pub fn stop_with(self, signal: i32) -> (i32, i32) {
        use testudo_sandbox::pidfd::{self, WaitMode};
        pidfd::send_signal(self.pidfd.as_fd(), signal).unwrap();
        let exit = pidfd::wait(self.pidfd.as_fd(), WaitMode::Block)
            .unwrap()
            .unwrap();
        (exit.status, exit.code)
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Reads a whole handle.
pub fn read_all(handle: &Handle) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = handle.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Writes `text` to `path` (test setup).
pub fn put(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// init's `deployment` service for a plan without app slots (the agent has the route, init
/// refuses every session).
fn no_app_slots() -> testudo_init::deploy::DeploymentService {
    let plan = Plan::for_development_host("no-slots", std::iter::empty());
    let dir = std::env::temp_dir();
    let (store, _) = testudo_init::slots::SlotStore::open(&dir, &plan, Vec::new());
    let (switches, _) = testudo_init::deploy::SwitchQueue::new().unwrap();
    testudo_init::deploy::DeploymentService::new(
        BTreeMap::new(),
        Arc::new(Mutex::new(store)),
        switches,
        Default::default(),
    )
}
