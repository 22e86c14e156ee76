//! Promise: hot swap compiles and checks the new version before the old stops, rolls back
//! when the new one fails within the grace period, and is never half-switched; a swap and a
//! rollback fit the pool a device's one-app host runs with.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testudo_plan::plan::RestartPolicy;
use testudo_wasm_host::grants::{SensorGrant, TelemetryGrant};
use testudo_wasm_host::supervise::{Supervisor, SwapResult};
use testudo_wasm_host::{
    compile_app, AppLimits, EngineOptions, Grants, HostEngine, LocalDevice, OutputSink,
    PreparedApp, RunContext, StopSignal,
};

const GRACE: Duration = Duration::from_millis(500);

fn grants() -> Arc<Grants> {
    Arc::new(Grants {
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
    })
}

fn prepare(path: &Path) -> PreparedApp {
    PreparedApp::prepare(common::engine().engine(), &common::compile(path), grants()).unwrap()
}

/// `prepare` on an engine of its own.
fn prepare_on(engine: &HostEngine, path: &Path) -> PreparedApp {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let compiled =
        compile_app(engine.engine(), None, &name, &std::fs::read(path).unwrap()).unwrap();
    PreparedApp::prepare(engine.engine(), &compiled, grants()).unwrap()
}

/// Versions of the published records, in order.
fn versions(device: &LocalDevice) -> Vec<u32> {
    device
        .published()
        .iter()
        .map(|record| {
            let json: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
            u32::try_from(json["version"].as_u64().unwrap()).unwrap()
        })
        .collect()
}

fn wait_for_version(device: &LocalDevice, version: u32, after: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !versions(device).iter().skip(after).any(|v| *v == version) {
        assert!(
            Instant::now() < deadline,
            "version {version} never published: {:?}",
            versions(device)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start(device: &Arc<LocalDevice>) -> Supervisor {
    start_app(prepare(&common::build("sensor-reader", &[])), device)
}

fn start_app(app: PreparedApp, device: &Arc<LocalDevice>) -> Supervisor {
    Supervisor::start(
        app,
        RunContext {
            limits: AppLimits {
                restart: RestartPolicy::OnFailure,
                cpu_time: Some(Duration::from_secs(5)),
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

#[test]
fn a_good_version_replaces_the_old_one_without_overlap() {
    let device = Arc::new(LocalDevice::new().with_sensor("temperature", 20.0));
    let mut supervisor = start(&device);
    wait_for_version(&device, 1, 0);
    let v2 = prepare(&common::build(
        "sensor-reader",
        &["SENSOR_READER_VERSION=2"],
    ));
    assert_eq!(supervisor.swap(v2, GRACE), SwapResult::Swapped);
    let at_swap = versions(&device).len();
    wait_for_version(&device, 2, at_swap);
    supervisor.stop();
    // Nothing half-switched: all version-1 records come before every version-2 record.
    let all = versions(&device);
    let first_v2 = all.iter().position(|v| *v == 2).unwrap();
    assert!(
        all[first_v2..].iter().all(|v| *v == 2),
        "interleaved: {all:?}"
    );
}

#[test]
fn a_version_failing_its_health_check_is_refused_and_the_old_one_never_stops() {
    let device = Arc::new(LocalDevice::new().with_sensor("temperature", 20.0));
    let mut supervisor = start(&device);
    wait_for_version(&device, 1, 0);
    let generation = supervisor.generation();
    // A version whose start function traps: instantiation fails in the health check.
    let bad = PreparedApp::prepare(
        common::engine().engine(),
        &testudo_wasm_host::compile_app(
            common::engine().engine(),
            None,
            "bad-start",
            b"(module (memory (export \"memory\") 1) (func $s unreachable) (start $s) (func (export \"_start\")))",
        )
        .unwrap(),
        grants(),
    )
    .unwrap();
    assert!(
        matches!(supervisor.swap(bad, GRACE), SwapResult::Refused(reason) if reason.contains("unreachable"))
    );
    assert_eq!(
        supervisor.generation(),
        generation,
        "the old version was restarted"
    );
    let count = versions(&device).len();
    wait_for_version(&device, 1, count);
    supervisor.stop();
}

#[test]
fn a_version_that_fails_within_the_grace_period_is_rolled_back() {
    let device = Arc::new(LocalDevice::new().with_sensor("temperature", 20.0));
    let mut supervisor = start(&device);
    wait_for_version(&device, 1, 0);
    // Links and instantiates fine, then traps as soon as it runs.
    let crashing = prepare(&common::build("hostile/recursion", &[]));
    match supervisor.swap(crashing, GRACE) {
        SwapResult::RolledBack(reason) => assert!(reason.contains("stack"), "{reason}"),
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(supervisor.active(), Some("sensor-reader"));
    let count = versions(&device).len();
    wait_for_version(&device, 1, count);
    supervisor.stop();
}

#[test]
fn a_swap_and_a_rollback_fit_the_one_app_hosts_pool() {
    // Its own engine: the pool a device's host has, for this one app only.
    let engine =
        HostEngine::new(&EngineOptions::one_app(AppLimits::default().memory_bytes)).unwrap();
    let device = Arc::new(LocalDevice::new().with_sensor("temperature", 20.0));
    let mut supervisor = start_app(
        prepare_on(&engine, &common::build("sensor-reader", &[])),
        &device,
    );
    wait_for_version(&device, 1, 0);
    // The candidate is instantiated beside the running version: two at once.
    let v2 = prepare_on(
        &engine,
        &common::build("sensor-reader", &["SENSOR_READER_VERSION=2"]),
    );
    assert_eq!(supervisor.swap(v2, GRACE), SwapResult::Swapped);
    wait_for_version(&device, 2, versions(&device).len());
    let crashing = prepare_on(&engine, &common::build("hostile/recursion", &[]));
    match supervisor.swap(crashing, GRACE) {
        SwapResult::RolledBack(reason) => assert!(reason.contains("stack"), "{reason}"),
        other => panic!("expected a rollback, got {other:?}"),
    }
    wait_for_version(&device, 2, versions(&device).len());
    supervisor.stop();
}
