//! Promise: hostile apps are contained and reported — each ends with the right outcome,
//! nothing escapes — while the host and another app on the same engine keep running.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testudo_plan::plan::RestartPolicy;
use testudo_wasm_host::grants::{SensorGrant, TelemetryGrant};
use testudo_wasm_host::supervise::Supervisor;
use testudo_wasm_host::{
    AppLimits, DirGrant, Grants, HostError, LimitExceeded, LocalDevice, Outcome, OutputSink,
    PreparedApp, RunContext, StopSignal,
};

fn limits() -> AppLimits {
    AppLimits {
        memory_bytes: 16 << 20,
        cpu_time: Some(Duration::from_millis(300)),
        output_bytes: 1 << 20,
        ..AppLimits::default()
    }
}

/// A sensor reader running forever on the shared engine, publishing into `device`.
fn bystander(device: &Arc<LocalDevice>) -> Supervisor {
    let app = common::build("sensor-reader", &[]);
    let grants = Grants {
        env: vec![("INTERVAL_MS".into(), "5".into())],
        sensor: Some(SensorGrant {
            route: "s".into(),
            channels: BTreeSet::new(),
        }),
        telemetry: Some(TelemetryGrant {
            publish: Some("t".into()),
            receive: None,
        }),
        ..Grants::default()
    };
    let prepared = PreparedApp::prepare(
        common::engine().engine(),
        &common::compile(&app),
        Arc::new(grants),
    )
    .unwrap();
    Supervisor::start(
        prepared,
        RunContext {
            limits: AppLimits {
                restart: RestartPolicy::OnFailure,
                ..AppLimits::default()
            },
            backend: Arc::clone(device) as _,
            stdout: OutputSink::Discard,
            stderr: OutputSink::Discard,
            stop: StopSignal::new(),
        },
    )
    .unwrap()
}

fn wait_for_more(device: &LocalDevice, than: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = device.published().len();
        if count > than {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "the bystander app stopped publishing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hostile_apps_end_with_their_reason_and_the_bystander_keeps_running() {
    let device = Arc::new(LocalDevice::new().with_sensor("temperature", 20.0));
    let mut supervisor = bystander(&device);
    let mut seen = wait_for_more(&device, 0);

    // A directory with a secret beside it, and a symlink the "host" planted pointing out.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(root.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), data.join("planted")).unwrap();
    std::os::unix::fs::symlink(root.path(), data.join("planted-dir")).unwrap();
    let data_grant = Grants {
        dirs: vec![DirGrant {
            host: data.clone(),
            guest: "/data".into(),
            read_only: false,
        }],
        ..Grants::default()
    };

    type Expectation = Box<dyn Fn(&common::Ran) -> bool>;
    let cases: Vec<(&str, Grants, Vec<String>, Expectation)> = vec![
        (
            "hostile/traversal",
            data_grant.clone(),
            vec![],
            Box::new(|ran| ran.outcome == Outcome::Exited(0)),
        ),
        (
            "hostile/symlink",
            data_grant.clone(),
            vec![],
            Box::new(|ran| ran.outcome == Outcome::Exited(0)),
        ),
        (
            "hostile/connect",
            Grants {
                net: BTreeSet::from(["127.0.0.1:9".to_owned()]),
                ..Grants::default()
            },
            vec![
                "127.0.0.1:22".into(),
                "10.0.0.1:80".into(),
                "localhost:9".into(),
            ],
            Box::new(|ran| {
                ran.outcome == Outcome::Exited(0) && ran.stdout.matches("not granted").count() == 3
            }),
        ),
        (
            "hostile/memory",
            Grants::default(),
            vec![],
            Box::new(
                |ran| matches!(ran.outcome, Outcome::Limit(LimitExceeded::Memory { limit, .. }) if limit == 16 << 20),
            ),
        ),
        (
            "hostile/spin",
            Grants::default(),
            vec![],
            Box::new(|ran| matches!(ran.outcome, Outcome::Limit(LimitExceeded::CpuTime { .. }))),
        ),
        (
            "hostile/recursion",
            Grants::default(),
            vec![],
            Box::new(
                |ran| matches!(&ran.outcome, Outcome::Trap(reason) if reason.contains("stack")),
            ),
        ),
        (
            "hostile/output",
            Grants::default(),
            vec![],
            Box::new(|ran| {
                ran.outcome == Outcome::Limit(LimitExceeded::Output { limit: 1 << 20 })
                    && ran.stdout.len() <= 1 << 20
            }),
        ),
    ];
    for (source, grants, args, expected) in cases {
        let ran = common::run(
            &common::build(source, &[]),
            Grants { args, ..grants },
            limits(),
            Arc::clone(&device) as _,
        );
        assert!(
            expected(&ran),
            "{source}: {:?} stderr {}",
            ran.outcome,
            ran.stderr
        );
        assert!(!ran.stdout.contains("escaped"), "{source}: {}", ran.stdout);
        assert!(ran.outcome.reason().is_some() || ran.outcome == Outcome::Exited(0));
        // The bystander still publishes after every hostile run.
        seen = wait_for_more(&device, seen);
    }
    assert_eq!(
        std::fs::read_to_string(root.path().join("secret.txt")).unwrap(),
        "secret"
    );
    assert!(!supervisor.is_finished());
    supervisor.stop();
}

#[test]
fn an_import_no_route_grants_is_refused_before_the_app_starts() {
    let app = common::compile(&common::build("hostile/imports", &[]));
    let error = PreparedApp::prepare(common::engine().engine(), &app, Arc::new(Grants::default()))
        .unwrap_err();
    match error {
        HostError::ImportNotGranted { module, name, .. } => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("testudo:device/admin@0.1.0", "reboot")
            );
        }
        other => panic!("expected ImportNotGranted, got {other}"),
    }
}
