//! Promise: Microsoft's official Python SDKs (PyPI `azure-iot-device`, `azure-iot-hub`) work
//! against the emulator unchanged: device connect, twin read/patch, desired patches, direct
//! methods, telemetry, service twin update with etag, method invocation, DPS provisioning.
//!
//! The device SDK always dials port 8883, so these tests bind 127.0.0.1:8883 and serialize
//! on a lock file; the service SDK takes `HostName=localhost:PORT`, so HTTPS uses a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::fs::File;
use std::path::Path;

use testudo_hub::{Emulator, EmulatorConfig, RunningHub};

/// Holds an exclusive lock on port 8883 for this machine's tests (also across processes).
struct PortLock {
    _file: File,
}

fn lock_8883() -> PortLock {
    let file = File::create(std::env::temp_dir().join("testudo-hub-port-8883.lock")).unwrap();
    file.lock().unwrap();
    PortLock { _file: file }
}

fn require_sdk() {
    if let Err(missing) = testudo_testkit::python::require_modules(
        &["azure.iot.device", "azure.iot.hub"],
        "azure-iot-device azure-iot-hub (Microsoft's official IoT Hub SDKs)",
    ) {
        panic!("{missing}");
    }
}

fn start_on_8883(dir: &Path) -> RunningHub {
    Emulator::start(EmulatorConfig {
        mqtt_port: 8883,
        ..EmulatorConfig::new(dir)
    })
    .expect("emulator must bind 127.0.0.1:8883 (is another hub running?)")
}

fn run_script(script: &str, env: &[(&str, String)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fidelity")
        .join(script);
    let output = testudo_testkit::python::command()
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the project's Python interpreter runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(" passed, 0 failed"),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn device_and_service_sdks_round_trip() {
    require_sdk();
    let _lock = lock_8883();
    let dir = tempfile::tempdir().unwrap();
    let hub = start_on_8883(dir.path());
    let device = hub.add_device("sdk-device").unwrap();
    run_script(
        "sdk_roundtrip.py",
        &[
            ("HUB_DEVICE_CS", device.connection_string.clone()),
            ("HUB_SERVICE_CS", hub.service_connection_string()),
            ("HUB_CA", dir.path().join("ca.pem").display().to_string()),
        ],
    );
    // What the SDKs did is visible in the hub's state.
    let twin = hub.twin("sdk-device").unwrap();
    assert_eq!(twin["properties"]["reported"]["firmware"], "1.2.3");
    assert_eq!(twin["properties"]["desired"]["telemetryInterval"], 5);
    let telemetry = hub.telemetry(Some("sdk-device"));
    assert_eq!(telemetry.len(), 1);
    assert_eq!(telemetry[0].body.as_deref(), Some("{\"temp\": 21.5}"));
    assert_eq!(telemetry[0].properties["$.ct"], "application/json");
}

#[test]
fn provisioning_sdk_registers_with_symmetric_key() {
    require_sdk();
    let _lock = lock_8883();
    let dir = tempfile::tempdir().unwrap();
    let hub = start_on_8883(dir.path());
    let key = hub.add_individual_enrollment("sdk-provisioned").unwrap();
    run_script(
        "sdk_provisioning.py",
        &[
            ("HUB_ID_SCOPE", hub.id_scope()),
            ("HUB_REGISTRATION_ID", "sdk-provisioned".to_owned()),
            ("HUB_ENROLLMENT_KEY", key),
            ("HUB_HOST", hub.host.clone()),
            ("HUB_CA", dir.path().join("ca.pem").display().to_string()),
        ],
    );
    assert_eq!(
        hub.twin("sdk-provisioned").unwrap()["properties"]["reported"]["provisioned"],
        true
    );
}
