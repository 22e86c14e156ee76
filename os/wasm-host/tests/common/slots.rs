//! An app slot under a real `testudo-init` (`RunningSystem`) with real sandboxed WASM hosts,
//! driven through init's `deployment` capability exactly as the agent relays tokens: shared
//! by the app slot tests and the deployment benchmark.

#![allow(clippy::unwrap_used)] // test support: a failed setup step is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use testudo_deployment::twin::{RuntimeStatus, SlotReport};
use testudo_deployment::{Action, App, AppRelease, Deployment, SessionState, SigningKey};
use testudo_init::{EventKind, InitOptions, RunningSystem};
use testudo_plan::plan::Rights as RouteRights;
use testudo_plan::plan::{Limits, Plan, RestartPolicy};
use testudo_plan::{AppSlot, Route};
use testudo_scheme::{Handle, Rights};

use super::sandboxed;

pub const SLOT: &str = "cloud-app";
pub const SYSTEM: &str = "test-gateway";
pub const WAIT: Duration = Duration::from_secs(30);

/// Two versions of a long-running app, and one that traps at start.
pub fn build_apps(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let source = dir.join("slot_app.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <time.h>\n\
         int main(void) {\n\
           printf(\"slot app version %d up\\n\", VERSION); fflush(stdout);\n\
         #ifdef ONCE\n return 0;\n#endif\n\
           for (;;) { struct timespec t = {0, 50000000}; nanosleep(&t, 0); }\n\
         }\n",
    )
    .unwrap();
    let crash = dir.join("crash_app.c");
    std::fs::write(&crash, "int main(void) { __builtin_trap(); }\n").unwrap();
    let build = |source: &Path, name: &str, defines: &[&str]| {
        let out = dir.join(name);
        testudo_testkit::wasm::compile_c_app(source, &out, defines).unwrap();
        out
    };
    (
        build(&source, "v1.wasm", &["VERSION=1"]),
        build(&source, "v2.wasm", &["VERSION=2"]),
        build(&crash, "crash.wasm", &[]),
    )
}

pub fn log_route() -> Route {
    sandboxed::route("log", "log", "log", RouteRights::Write)
}

pub fn plan() -> Plan {
    let mut plan = sandboxed::plan(Vec::new());
    plan.compatible = SYSTEM.into();
    plan.app_slots.insert(
        SLOT.into(),
        AppSlot {
            max_uses: BTreeMap::new(),
            limits: Limits {
                memory_bytes: 16 << 20,
                cpu_percent: 0,
                restart: RestartPolicy::Always,
                max_tasks: 8,
                cpu_time_ms: 0,
            },
            after: Vec::new(),
            initial: None,
        },
    );
    plan
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub key: SigningKey,
    system: Option<RunningSystem>,
}

impl Rig {
    pub fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[42; 32]);
        let public = dir.path().join("deploy.ed25519.pub");
        std::fs::write(&public, ed25519_pem(&key)).unwrap();
        let mut rig = Rig {
            dir,
            key,
            system: None,
        };
        rig.start();
        rig
    }

    pub fn start(&mut self) {
        let root = self.dir.path();
        let mut options = InitOptions::new(
            sandboxed::bin_dir(),
            root.join("state"),
            root.join("data"),
            root.join("app"),
        );
        options.deploy_key = Some(root.join("deploy.ed25519.pub"));
        options.slot_health_check = Duration::from_millis(600);
        self.system = Some(RunningSystem::start(plan(), options).expect("init starts"));
        self.system()
            .events
            .wait_for(WAIT, |e| matches!(e.kind, EventKind::Ready { .. }))
            .expect("ready");
    }

    pub fn restart(&mut self) {
        self.system.take().unwrap().stop().unwrap();
        self.start();
    }

    pub fn system(&self) -> &RunningSystem {
        self.system.as_ref().unwrap()
    }

    pub fn route(&self) -> Handle {
        self.system()
            .builtin_handle("agent", "deployment", Rights::ReadWrite)
            .unwrap()
    }

    pub fn sign(&self, deployment: &Deployment) -> String {
        testudo_deployment::sign(deployment, &self.key).unwrap()
    }

    pub fn reports(&self) -> BTreeMap<String, SlotReport> {
        let route = self.route();
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = route.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Relays `token` as the agent does, with `module` when init asks for it; returns every
    /// distinct state seen, the last one final.
    pub fn relay(&self, slot: &str, token: &str, module: &[u8]) -> Vec<SessionState> {
        let session = self.route().open(slot, Rights::ReadWrite).unwrap();
        session.write_all(token.as_bytes()).unwrap();
        let mut seen = vec![read_state(&session)];
        if matches!(seen[0], SessionState::WantsModule { .. }) {
            for chunk in module.chunks(7000) {
                if session.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = session.fsync();
        }
        let deadline = Instant::now() + WAIT;
        while !seen.last().unwrap().is_final() {
            assert!(Instant::now() < deadline, "never decided: {seen:?}");
            std::thread::sleep(Duration::from_millis(10));
            let state = read_state(&session);
            if seen.last() != Some(&state) {
                seen.push(state);
            }
        }
        seen
    }

    /// How often the slot's app was started since init started.
    pub fn starts(&self) -> usize {
        self.system()
            .events
            .snapshot()
            .iter()
            .filter(|e| e.component == SLOT && matches!(e.kind, EventKind::Started { .. }))
            .count()
    }

    /// Waits until the slot runs the app of `module` (deployment `serial`).
    pub fn wait_running(&self, serial: u64, module: &[u8]) {
        let sha256 = hex::encode(sha2::Sha256::digest(module));
        let deadline = Instant::now() + WAIT;
        loop {
            let report = &self.reports()[SLOT];
            if report.runtime_status == RuntimeStatus::Running
                && report.serial == Some(serial)
                && report.sha256.as_deref() == Some(sha256.as_str())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serial {serial} not running: {report:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn ed25519_pem(key: &SigningKey) -> String {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    key.verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap()
}

pub fn read_state(session: &Handle) -> SessionState {
    let mut buf = vec![0u8; testudo_deployment::session::MAX_STATE_BYTES];
    let n = session.read(&mut buf).unwrap();
    SessionState::from_line(&buf[..n]).unwrap()
}

pub fn deployment(serial: u64, module: &[u8], uses: BTreeMap<String, Route>) -> Deployment {
    Deployment {
        slot: SLOT.into(),
        compatible: SYSTEM.into(),
        serial,
        action: Action::Deploy(AppRelease {
            app: App {
                name: "slot-app".into(),
                version: format!("1.0.{serial}"),
                sha256: hex::encode(sha2::Sha256::digest(module)),
                size: module.len() as u64,
            },
            uses,
            url: Some(format!("https://artifacts.test/{serial}.wasm")),
        }),
    }
}
