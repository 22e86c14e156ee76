//! Promise: the real apps work together — the sensor reader (as a component) publishes
//! readings, the forwarder (as a core module) aggregates them and publishes summaries.
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
