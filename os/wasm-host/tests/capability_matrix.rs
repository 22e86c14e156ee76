//! Promise: an app gets exactly what its grants give — for every kind of capability, the
//! granted case works and the not-granted case fails — as a core module and as a component.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use testudo_wasm_host::grants::{SensorGrant, TelemetryGrant};
use testudo_wasm_host::{AppLimits, DirGrant, Grants, LocalDevice, Outcome, TelemetryRecord};

/// Both forms of the probe app.
fn probes() -> Vec<PathBuf> {
    vec![
        common::build("probe", &[]),
        common::build_component("probe"),
    ]
}

fn probe(app: &Path, args: &[&str], grants: Grants, device: LocalDevice) -> common::Ran {
    let grants = Grants {
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..grants
    };
    common::run(app, grants, AppLimits::default(), Arc::new(device))
}

fn works(ran: &common::Ran) -> bool {
    ran.outcome == Outcome::Exited(0)
}

#[test]
fn directories_only_as_granted_and_read_only_where_said() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "inside").unwrap();
    for app in probes() {
        let ro = Grants {
            dirs: vec![DirGrant {
                host: host.path().to_owned(),
                guest: "/data".into(),
                read_only: true,
            }],
            ..Grants::default()
        };
        let rw = Grants {
            dirs: vec![DirGrant {
                read_only: false,
                ..ro.dirs[0].clone()
            }],
            ..Grants::default()
        };
        let read = probe(
            &app,
            &["read", "/data/in.txt"],
            ro.clone(),
            LocalDevice::new(),
        );
        assert!(works(&read), "{app:?}: {read:?}");
        assert_eq!(read.stdout, "inside");
        let denied = probe(
            &app,
            &["read", "/data/in.txt"],
            Grants::default(),
            LocalDevice::new(),
        );
        assert_eq!(denied.outcome, Outcome::Exited(1), "{app:?}: {denied:?}");
        let ro_write = probe(
            &app,
            &["write", "/data/new.txt", "x"],
            ro,
            LocalDevice::new(),
        );
        assert_eq!(
            ro_write.outcome,
            Outcome::Exited(1),
            "{app:?}: {ro_write:?}"
        );
        assert!(!host.path().join("new.txt").exists());
        let rw_write = probe(
            &app,
            &["write", "/data/new.txt", "x"],
            rw,
            LocalDevice::new(),
        );
        assert!(works(&rw_write), "{app:?}: {rw_write:?}");
        assert_eq!(
            std::fs::read_to_string(host.path().join("new.txt")).unwrap(),
            "x"
        );
        std::fs::remove_file(host.path().join("new.txt")).unwrap();
    }
}

#[test]
fn environment_and_arguments_come_only_from_the_grants() {
    // The test process's own environment must not leak in.
    let leaked = std::env::var("PATH").is_ok();
    assert!(leaked, "the test needs PATH set to show it does not leak");
    for app in probes() {
        let grants = Grants {
            env: vec![("GREETING".into(), "hi".into())],
            ..Grants::default()
        };
        let got = probe(
            &app,
            &["env", "GREETING"],
            grants.clone(),
            LocalDevice::new(),
        );
        assert_eq!(got.stdout, "hi\n", "{app:?}: {got:?}");
        let path = probe(&app, &["env", "PATH"], grants, LocalDevice::new());
        assert_eq!(path.outcome, Outcome::Exited(1), "{app:?}: {path:?}");
        let args = probe(
            &app,
            &["args", "x y"],
            Grants::default(),
            LocalDevice::new(),
        );
        assert!(args.stdout.ends_with("args\nx y\n"), "{app:?}: {args:?}");
    }
}

#[test]
fn sensors_only_when_routed_and_only_allowed_channels() {
    for app in probes() {
        let device = || {
            LocalDevice::new()
                .with_sensor("temperature", 21.5)
                .with_sensor("humidity", 40.0)
        };
        let grants = Grants {
            sensor: Some(SensorGrant {
                route: "sensors".into(),
                channels: BTreeSet::from(["temperature".to_owned()]),
            }),
            ..Grants::default()
        };
        let read = probe(&app, &["sensor", "temperature"], grants.clone(), device());
        assert_eq!(read.stdout, "21.500\n", "{app:?}: {read:?}");
        let other = probe(&app, &["sensor", "humidity"], grants, device());
        assert_eq!(other.outcome, Outcome::Exited(1), "{app:?}: {other:?}");
        assert!(other.stderr.contains("not granted"), "{app:?}: {other:?}");
        let none = probe(
            &app,
            &["sensor", "temperature"],
            Grants::default(),
            device(),
        );
        assert_eq!(none.outcome, Outcome::Exited(1), "{app:?}: {none:?}");
    }
}

#[test]
fn telemetry_publish_and_receive_need_their_rights() {
    for app in probes() {
        let publisher = Grants {
            telemetry: Some(TelemetryGrant {
                publish: Some("up".into()),
                receive: None,
            }),
            ..Grants::default()
        };
        let device = Arc::new(LocalDevice::new());
        let ran = common::run(
            &app,
            Grants {
                args: vec!["publish".into(), "t".into(), "{\"v\":1}".into()],
                ..publisher.clone()
            },
            AppLimits::default(),
            Arc::clone(&device) as _,
        );
        assert!(works(&ran), "{app:?}: {ran:?}");
        assert_eq!(
            device.published(),
            vec![TelemetryRecord {
                topic: "t".into(),
                payload: b"{\"v\":1}".to_vec()
            }]
        );
        let refused = probe(
            &app,
            &["publish", "t", "x"],
            Grants::default(),
            LocalDevice::new(),
        );
        assert_eq!(refused.outcome, Outcome::Exited(1), "{app:?}: {refused:?}");
        let no_receive = probe(&app, &["receive"], publisher, LocalDevice::new());
        assert_eq!(
            no_receive.outcome,
            Outcome::Exited(1),
            "{app:?}: {no_receive:?}"
        );

        let receiver = Grants {
            telemetry: Some(TelemetryGrant {
                publish: None,
                receive: Some("down".into()),
            }),
            ..Grants::default()
        };
        let inbox = LocalDevice::new();
        inbox.push_inbox(TelemetryRecord {
            topic: "t".into(),
            payload: b"hello".to_vec(),
        });
        let got = probe(&app, &["receive"], receiver, inbox);
        assert_eq!(got.stdout, "t hello\n", "{app:?}: {got:?}");
    }
}

#[test]
fn network_only_to_routed_destinations() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let routed = listener.local_addr().unwrap().to_string();
    // A second listener that is reachable but not routed: reaching it would be an escape.
    let unrouted_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unrouted = unrouted_listener.local_addr().unwrap().to_string();
    unrouted_listener.set_nonblocking(true).unwrap();
    for app in probes() {
        let grants = Grants {
            net: BTreeSet::from([routed.clone()]),
            ..Grants::default()
        };
        let sent = probe(
            &app,
            &["send", &routed, "ping"],
            grants.clone(),
            LocalDevice::new(),
        );
        assert!(works(&sent), "{app:?}: {sent:?}");
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut stream, &mut got).unwrap();
        assert_eq!(got, "ping");
        let refused = probe(
            &app,
            &["send", &unrouted, "ping"],
            grants,
            LocalDevice::new(),
        );
        assert_eq!(refused.outcome, Outcome::Exited(1), "{app:?}: {refused:?}");
        let none = probe(
            &app,
            &["send", &routed, "ping"],
            Grants::default(),
            LocalDevice::new(),
        );
        assert_eq!(none.outcome, Outcome::Exited(1), "{app:?}: {none:?}");
        assert!(
            unrouted_listener.accept().is_err(),
            "the unrouted listener was reached"
        );
    }
}

#[test]
fn stdio_reaches_the_host_only_with_a_log_route() {
    let app = common::build("hello", &[]);
    let engine = common::engine().engine();
    for (stdio, expected) in [(true, "hello from testudo\n"), (false, "")] {
        let prepared = testudo_wasm_host::PreparedApp::prepare(
            engine,
            &common::compile(&app),
            Arc::new(Grants {
                stdio,
                ..Grants::default()
            }),
        )
        .unwrap();
        let stdout = Arc::new(std::sync::Mutex::new(Vec::new()));
        let outcome = prepared
            .run(&testudo_wasm_host::RunContext {
                limits: AppLimits::default(),
                backend: Arc::new(LocalDevice::new()),
                stdout: testudo_wasm_host::OutputSink::Buffer(Arc::clone(&stdout)),
                stderr: testudo_wasm_host::OutputSink::Discard,
                stop: testudo_wasm_host::StopSignal::new(),
            })
            .unwrap();
        assert_eq!(outcome, Outcome::Exited(0));
        assert_eq!(String::from_utf8_lossy(&stdout.lock().unwrap()), expected);
    }
}
