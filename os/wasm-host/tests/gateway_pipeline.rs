//! Promise: the real apps work together — the sensor reader (as a component) publishes
//! readings, the forwarder (as a core module) aggregates them and publishes summaries; and
//! under the real `testudo-init`, the telemetry capability the sensor reader *provides*
//! (`provides.readings`, as in `system-config/examples/gateway.ncl`) reaches the forwarder
//! through its route, served by the reader's host as a scheme provider, while the forwarder's
//! storage route is the directory the storage driver gives it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testudo_wasm_host::grants::{SensorGrant, TelemetryGrant};
use testudo_wasm_host::{AppLimits, Grants, LocalDevice, Outcome};

#[test]
fn readings_flow_from_the_reader_through_the_forwarder() {
    let device = Arc::new(
        LocalDevice::new()
            .with_sensor("temperature", 21.0)
            .with_sensor("humidity", 40.0)
            .with_loopback(),
    );
    let reader = common::build_component("sensor-reader");
    let reader_grants = Grants {
        env: vec![
            ("INTERVAL_MS".into(), "1".into()),
            ("ROUNDS".into(), "5".into()),
            ("SENSOR_CHANNELS".into(), "temperature,humidity".into()),
        ],
        sensor: Some(SensorGrant {
            route: "sensor".into(),
            channels: BTreeSet::from(["humidity".to_owned(), "temperature".to_owned()]),
        }),
        telemetry: Some(TelemetryGrant {
            publish: Some("readings".into()),
            receive: None,
        }),
        ..Grants::default()
    };
    let ran = common::run(
        &reader,
        reader_grants,
        AppLimits::default(),
        Arc::clone(&device) as _,
    );
    assert_eq!(ran.outcome, Outcome::Exited(0), "{}", ran.stderr);
    assert_eq!(device.published().len(), 10);

    let forwarder = common::build("forwarder", &[]);
    let forwarder_grants = Grants {
        env: vec![
            ("WINDOW".into(), "10".into()),
            ("SUMMARIES".into(), "1".into()),
            ("IDLE_MS".into(), "1".into()),
        ],
        telemetry: Some(TelemetryGrant {
            publish: Some("upstream".into()),
            receive: Some("readings".into()),
        }),
        ..Grants::default()
    };
    let started = Instant::now();
    let ran = common::run(
        &forwarder,
        forwarder_grants,
        AppLimits::default(),
        Arc::clone(&device) as _,
    );
    assert_eq!(ran.outcome, Outcome::Exited(0), "{}", ran.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    let aggregate = device
        .published()
        .into_iter()
        .find(|record| record.topic == "aggregate")
        .expect("an aggregate was published");
    let summary: serde_json::Value = serde_json::from_slice(&aggregate.payload).unwrap();
    assert_eq!(summary["count"], 10);
    assert_eq!(summary["min"], 21.0);
    assert_eq!(summary["max"], 40.0);
    assert_eq!(summary["mean"], 30.5);
}

/// The gateway's app pipeline under the real `testudo-init`: the `testudo-sensor` driver,
/// the sensor reader providing `readings`, the forwarder using it and writing summaries to
/// its storage route (`/spool`) served by `testudo-storage`. Needs the drivers' binaries
/// next to the host's (as `cargo test --workspace` builds them).
#[test]
fn under_init_the_forwarder_receives_what_the_reader_provides() {
    use common::sandboxed::{bin_dir, plan, route, wasm_component};
    use testudo_init::{EventKind, InitOptions, RunningSystem};
    use testudo_plan::plan::{ComponentKind, Provided, RestartPolicy, Rights, Run};
    use testudo_plan::SandboxRole;

    for binary in ["testudo-sensor", "testudo-storage"] {
        assert!(
            bin_dir().join(binary).is_file(),
            "{binary} not found in {}: build the workspace first (cargo build -p testudo-drivers)",
            bin_dir().display()
        );
    }
    let driver = |binary: &str, capability: &str| {
        let mut component = wasm_component("unused");
        (component.kind, component.role) = if capability == "storage" {
            (ComponentKind::Service, SandboxRole::StorageDriver)
        } else {
            (ComponentKind::Driver, SandboxRole::Driver)
        };
        component.run = Run::Binary {
            name: binary.into(),
        };
        component.limits.memory_bytes = 64 << 20;
        component.provides.insert(
            capability.into(),
            Provided {
                interface: capability.into(),
            },
        );
        component
    };
    let mut reader = wasm_component("wasm-apps/sensor-reader.wasm");
    reader.provides.insert(
        "readings".into(),
        Provided {
            interface: "telemetry".into(),
        },
    );
    reader.uses.insert(
        "sensor".into(),
        route("sensor", "sensor", "sensor", Rights::Read),
    );
    reader.env.insert("INTERVAL_MS".into(), "20".into());
    reader.limits.restart = RestartPolicy::Never;
    let mut forwarder = wasm_component("wasm-apps/forwarder.wasm");
    forwarder.uses.insert(
        "readings".into(),
        route("sensor-reader", "readings", "telemetry", Rights::Read),
    );
    forwarder.uses.insert(
        "spool".into(),
        route("storage", "storage", "storage", Rights::ReadWrite),
    );
    forwarder.env.insert("WINDOW".into(), "5".into());
    forwarder.env.insert("SUMMARIES".into(), "2".into());
    forwarder.env.insert("IDLE_MS".into(), "10".into());
    let plan = plan(vec![
        ("sensor", driver("testudo-sensor", "sensor")),
        ("storage", driver("testudo-storage", "storage")),
        ("sensor-reader", reader),
        ("forwarder", forwarder),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("app/wasm-apps");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::copy(
        common::build("sensor-reader", &[]),
        apps.join("sensor-reader.wasm"),
    )
    .unwrap();
    std::fs::copy(common::build("forwarder", &[]), apps.join("forwarder.wasm")).unwrap();
    let mut options = InitOptions::new(
        bin_dir(),
        dir.path().join("state"),
        dir.path().join("data"),
        dir.path().join("app"),
    );
    options.stop_grace = Duration::from_millis(500);
    let data_dir = options.data_dir.clone();
    let system = RunningSystem::start(plan, options).unwrap();
    let ended = system.events.wait_for(Duration::from_secs(60), |event| {
        event.component == "forwarder"
            && matches!(
                event.kind,
                EventKind::Exited { .. }
                    | EventKind::Signaled { .. }
                    | EventKind::SeccompDenied { .. }
                    | EventKind::LaunchFailed { .. }
                    | EventKind::NotStarted { .. }
            )
    });
    let events: Vec<String> = system.events.snapshot().iter().map(|e| e.line()).collect();
    system.stop().unwrap();
    let ended =
        ended.unwrap_or_else(|| panic!("the forwarder did not finish:\n{}", events.join("\n")));
    assert_eq!(
        ended.kind,
        EventKind::Exited { code: 0 },
        "{}",
        events.join("\n")
    );
    // The forwarder's `/spool` is `<data>/forwarder`: the directory the storage driver gives
    // the consumer `forwarder` (decision 0043).
    let spooled = std::fs::read_to_string(data_dir.join("forwarder/aggregates.jsonl"))
        .unwrap_or_else(|error| panic!("no spooled summaries ({error}):\n{}", events.join("\n")));
    let summaries: Vec<serde_json::Value> = spooled
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // testudo-sensor's readings: 18.0, 18.2, 18.4, ... (0.2 C steps), all of them in order.
    assert_eq!(
        summaries,
        vec![
            serde_json::json!({ "count": 5, "min": 18.0, "max": 18.8, "mean": 18.4 }),
            serde_json::json!({ "count": 5, "min": 19.0, "max": 19.8, "mean": 19.4 }),
        ],
        "{spooled}"
    );
}
