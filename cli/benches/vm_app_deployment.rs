//! Benchmark: the defining loop on the device, under QEMU (TCG). The development gateway is
//! booted and provisions itself; then signed deployments of two builds of `sensor-reader`
//! alternate in its `cloud-app` slot. Each is set as desired properties through the hub's
//! service API (its acknowledgement starts the clock) and timed until the hub holds the
//! reported properties saying the new serial is `running`. Both modules are on the device
//! after the warm-up (download excluded), median of 5.
//!
//! Anchors, from the same console, as its lines reach this host: the app's sandboxed start
//! (init's line switching the slot to its line saying the app started) and the module's
//! download in the warm-up (the agent's `fetching` line to its last progress line).
//!
//! `cargo bench -p testudo --bench vm_app_deployment` (needs Microsoft's service SDK in the
//! project's Python environment for the shared rig, like the VM tests).

#![allow(clippy::unwrap_used)] // a benchmark: a failed set-up step is a failed run

#[path = "common/slot_deployment.rs"]
mod slot_deployment;
#[path = "common/timing.rs"]
mod timing;
#[path = "../tests/vm_device/mod.rs"]
mod vm_device;

use std::time::{Duration, Instant};

use slot_deployment::*;
use vm_device::*;

const BOOT: Duration = Duration::from_secs(900);
/// Longer than the slot's health check (3 s), so each deployment is decided before the next.
const SETTLE: Duration = Duration::from_millis(3500);

/// The time from the first console line containing `from` after `after` to the first line
/// containing `to` after that.
fn between(vm: &RunningVm, after: Instant, from: &str, to: &str) -> Option<Duration> {
    let lines = vm.lines_since(after);
    let (start, _) = lines.iter().find(|(_, line)| line.contains(from))?;
    let (end, _) = lines
        .iter()
        .find(|(at, line)| at >= start && line.contains(to))?;
    Some(end.duration_since(*start))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("vm_app_deployment: bench");
        return;
    }
    require_service_sdk();
    let _ports = lock_hub_ports();
    let rig = DeviceRig::build();
    let _hub = rig.serve_hub();
    let ek = rig.tpm_ek();
    rig.enroll(&ek);
    let mut vm = rig.boot();
    vm.wait_line("cloud: device properties reported", BOOT);

    let client = rig.service_client();
    let plan: serde_json::Value = serde_json::from_str(&testudo_ok(
        &[
            "plan",
            repo()
                .join("system-config/examples/gateway-dev.ncl")
                .to_str()
                .unwrap(),
        ],
        &rig.data_home,
    ))
    .unwrap();
    let source = repo().join("wasm-apps/sensor-reader.c");
    let dir = tempfile::tempdir().unwrap();
    let modules: Vec<Module> = ["1", "2"]
        .iter()
        .map(|version| {
            let out = dir.path().join(format!("v{version}.wasm"));
            let define = format!("SENSOR_READER_VERSION={version}");
            testudo_testkit::wasm::compile_c_app(&source, &out, &[&define]).unwrap();
            let bytes = std::fs::read(&out).unwrap();
            let mut module = Module {
                bytes,
                url: String::new(),
            };
            let path = format!("/testudo/artifacts/{}", module.sha256());
            client.upload(&path, &module.bytes).unwrap();
            module.url = format!("https://{}{path}", client.hub_name());
            module
        })
        .collect();
    let mut deployer = Deployer {
        client,
        key: testudo_deployment::read_signing_key(
            &rig.data_home.join("testudo/dev-keys/deploy.ed25519"),
        )
        .unwrap(),
        compatible: plan["compatible"].as_str().unwrap().to_owned(),
        uses: serde_json::from_value(plan["app_slots"][SLOT]["max_uses"].clone()).unwrap(),
        device: DEVICE.to_owned(),
        serial: 0,
    };

    let mut downloads = Vec::new();
    for module in &modules {
        let (serial, acknowledged) = deployer.deploy(module);
        deployer.wait_running(serial, BOOT);
        std::thread::sleep(SETTLE);
        downloads.extend(between(
            &vm,
            acknowledged,
            "app deployments: slot cloud-app: fetching",
            &format!(
                "app deployments: {} of {} bytes",
                module.bytes.len(),
                module.bytes.len()
            ),
        ));
    }
    let (mut running, mut starts) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let (serial, acknowledged) = deployer.deploy(&modules[i % 2]);
        running.push(
            deployer
                .wait_running(serial, BOOT)
                .duration_since(acknowledged),
        );
        std::thread::sleep(SETTLE);
        starts.extend(between(
            &vm,
            acknowledged,
            &format!("cloud-app: app slot: serial {serial}:"),
            "cloud-app: started",
        ));
    }
    report(
        "in the VM (TCG): desired change acknowledged by the hub -> new app reported running (module on the device)",
        running,
        vec![
            (
                "the app's sandboxed start on the device (switch line -> started line)".to_owned(),
                starts,
            ),
            (
                format!(
                    "the module's download on the device ({} bytes, warm-up)",
                    modules[0].bytes.len()
                ),
                downloads,
            ),
        ],
    );
    vm.kill();
}
