//! Promise: init owns the app slots and verifies every deployment before anything changes.
//! Driven through init's `deployment` capability exactly as the agent relays tokens (a
//! session: the token, then — only when init asks — the module's bytes and `fsync`), with
//! real sandboxed WASM hosts: a signed deployment runs its app, under a health check, and
//! is reported; the same token again changes nothing; an app that crashes at start or does
//! not validate is rolled back to the previous app; a bad signature, an unknown key,
//! another system, a replayed serial, routes beyond the slot, a module of another size or
//! hash, a slot that does not exist are refused with the reason and change nothing; after
//! a restart the deployed app runs again, verified from the data partition; a signed
//! removal empties the slot.

#[path = "common/sandboxed.rs"]
#[allow(dead_code)] // shared with other tests
mod sandboxed;

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

const SLOT: &str = "cloud-app";
const SYSTEM: &str = "test-gateway";
const WAIT: Duration = Duration::from_secs(30);

/// Two versions of a long-running app, and one that traps at start.
fn build_apps(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let source = dir.join("slot_app.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <time.h>\n\
         int main(void) {\n\
           printf(\"slot app version %d up\\n\", VERSION); fflush(stdout);\n\
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

fn log_route() -> Route {
    sandboxed::route("log", "log", "log", RouteRights::Write)
}

fn plan() -> Plan {
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

struct Rig {
    dir: tempfile::TempDir,
    key: SigningKey,
    system: Option<RunningSystem>,
}

impl Rig {
    fn new() -> Rig {
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

    fn start(&mut self) {
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

    fn restart(&mut self) {
        self.system.take().unwrap().stop().unwrap();
        self.start();
    }

    fn system(&self) -> &RunningSystem {
        self.system.as_ref().unwrap()
    }

    fn route(&self) -> Handle {
        self.system()
            .builtin_handle("agent", "deployment", Rights::ReadWrite)
            .unwrap()
    }

    fn sign(&self, deployment: &Deployment) -> String {
        testudo_deployment::sign(deployment, &self.key).unwrap()
    }

    fn reports(&self) -> BTreeMap<String, SlotReport> {
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
    fn relay(&self, slot: &str, token: &str, module: &[u8]) -> Vec<SessionState> {
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
    fn starts(&self) -> usize {
        self.system()
            .events
            .snapshot()
            .iter()
            .filter(|e| e.component == SLOT && matches!(e.kind, EventKind::Started { .. }))
            .count()
    }

    /// Waits until the slot runs the app of `module` (deployment `serial`).
    fn wait_running(&self, serial: u64, module: &[u8]) {
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

fn ed25519_pem(key: &SigningKey) -> String {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    key.verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap()
}

fn read_state(session: &Handle) -> SessionState {
    let mut buf = vec![0u8; testudo_deployment::session::MAX_STATE_BYTES];
    let n = session.read(&mut buf).unwrap();
    SessionState::from_line(&buf[..n]).unwrap()
}

fn deployment(serial: u64, module: &[u8], uses: BTreeMap<String, Route>) -> Deployment {
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

fn refused(states: &[SessionState], reason: &str) {
    match states.last().unwrap() {
        SessionState::Refused { code, description } => {
            assert_eq!(*code, 400);
            assert!(
                description.contains(reason),
                "{description:?} lacks {reason:?}"
            );
        }
        other => panic!("not refused: {states:?} ({other:?})"),
    }
}

#[test]
fn deployments_are_verified_applied_rolled_back_and_survive_a_restart() {
    let mut rig = Rig::new();
    let (v1, v2, crash) = build_apps(rig.dir.path());
    let (v1, v2, crash) = (
        std::fs::read(v1).unwrap(),
        std::fs::read(v2).unwrap(),
        std::fs::read(crash).unwrap(),
    );
    assert_eq!(rig.reports()[SLOT].runtime_status, RuntimeStatus::Stopped);

    // A signed deployment: the module is asked for, then the app runs under its check.
    let first = rig.sign(&deployment(1, &v1, BTreeMap::new()));
    let states = rig.relay(SLOT, &first, &v1);
    assert!(
        matches!(states[0], SessionState::WantsModule { size, .. } if size == v1.len() as u64),
        "{states:?}"
    );
    assert!(
        states
            .iter()
            .any(|s| matches!(s, SessionState::Started { serial: 1, .. })),
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&SessionState::Applied { serial: 1 }));
    rig.wait_running(1, &v1);
    assert_eq!(rig.starts(), 1);

    // The same token again (a redelivered twin): nothing happens.
    assert_eq!(
        rig.relay(SLOT, &first, &v1),
        vec![SessionState::Unchanged { serial: 1 }]
    );

    // Bad documents: each refused, with its reason, and version 1 keeps running.
    let other_key = SigningKey::from_bytes(&[9; 32]);
    let unknown =
        testudo_deployment::sign(&deployment(2, &v2, BTreeMap::new()), &other_key).unwrap();
    refused(&rig.relay(SLOT, &unknown, &v2), "key");
    let mut tampered = rig.sign(&deployment(2, &v2, BTreeMap::new()));
    tampered.pop();
    tampered.push('A');
    refused(&rig.relay(SLOT, &tampered, &v2), "signature");
    let mut elsewhere = deployment(2, &v2, BTreeMap::new());
    elsewhere.compatible = "another-system".into();
    refused(
        &rig.relay(SLOT, &rig.sign(&elsewhere), &v2),
        "another-system",
    );
    refused(
        &rig.relay(SLOT, &rig.sign(&deployment(1, &v2, BTreeMap::new())), &v2),
        "serial 1",
    );
    let wider: BTreeMap<String, Route> = [("log".to_owned(), log_route())].into();
    refused(
        &rig.relay(SLOT, &rig.sign(&deployment(2, &v2, wider)), &v2),
        "route `log`",
    );
    let mut other_slot = deployment(2, &v2, BTreeMap::new());
    other_slot.slot = "no-such-slot".into();
    refused(
        &rig.relay(SLOT, &rig.sign(&other_slot), &v2),
        "no-such-slot",
    );
    assert!(rig.route().open("no-such-slot", Rights::ReadWrite).is_err());
    let mut same_size = v2.clone();
    *same_size.last_mut().unwrap() ^= 1;
    refused(
        &rig.relay(
            SLOT,
            &rig.sign(&deployment(2, &v2, BTreeMap::new())),
            &same_size,
        ),
        "sha256",
    );
    refused(
        &rig.relay(
            SLOT,
            &rig.sign(&deployment(3, &v2, BTreeMap::new())),
            &v2[..v2.len() - 10],
        ),
        "the deployment says",
    );
    let mut longer = v2.clone();
    longer.extend_from_slice(b"trailing");
    refused(
        &rig.relay(
            SLOT,
            &rig.sign(&deployment(4, &v2, BTreeMap::new())),
            &longer,
        ),
        "longer",
    );
    rig.wait_running(1, &v1);
    assert_eq!(rig.starts(), 1, "a refused deployment restarted the app");

    // An app that traps at start, and bytes that are no WebAssembly: both rolled back.
    let states = rig.relay(
        SLOT,
        &rig.sign(&deployment(5, &crash, BTreeMap::new())),
        &crash,
    );
    match states.last().unwrap() {
        SessionState::RolledBack {
            code: 500,
            description,
        } => {
            assert!(
                description.contains("rolled back to slot-app 1.0.1"),
                "{description}"
            )
        }
        other => panic!("not rolled back: {other:?}"),
    }
    rig.wait_running(1, &v1);
    let junk = b"\0asm but not really a module".to_vec();
    let states = rig.relay(
        SLOT,
        &rig.sign(&deployment(6, &junk, BTreeMap::new())),
        &junk,
    );
    assert!(
        matches!(
            states.last(),
            Some(SessionState::RolledBack { code: 500, .. })
        ),
        "{states:?}"
    );
    rig.wait_running(1, &v1);
    // Version 1, the crashing app, version 1 again, the junk, version 1 again.
    assert_eq!(rig.starts(), 5);
    let report = &rig.reports()[SLOT];
    assert_eq!(report.last_result.as_ref().unwrap().code, 500, "{report:?}");

    // Version 2 replaces version 1; after a restart it runs again, verified from /data.
    let states = rig.relay(SLOT, &rig.sign(&deployment(7, &v2, BTreeMap::new())), &v2);
    assert_eq!(states.last(), Some(&SessionState::Applied { serial: 7 }));
    rig.wait_running(7, &v2);
    rig.restart();
    rig.wait_running(7, &v2);

    // A signed removal empties the slot, for good.
    let removal = Deployment {
        slot: SLOT.into(),
        compatible: SYSTEM.into(),
        serial: 8,
        action: Action::Remove,
    };
    let states = rig.relay(SLOT, &rig.sign(&removal), &[]);
    assert_eq!(
        states.last(),
        Some(&SessionState::Applied { serial: 8 }),
        "{states:?}"
    );
    assert_eq!(rig.reports()[SLOT].runtime_status, RuntimeStatus::Stopped);
    rig.restart();
    assert_eq!(rig.reports()[SLOT].runtime_status, RuntimeStatus::Stopped);
    assert_eq!(
        rig.relay(SLOT, &rig.sign(&removal), &[]),
        vec![SessionState::Unchanged { serial: 8 }]
    );
}
