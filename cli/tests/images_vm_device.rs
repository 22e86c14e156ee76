//! Promise: the whole device, zero-touch. The development gateway (`gateway-dev.ncl`) is built;
//! the hub emulator runs on this host with the development CA and the gateway's ID scope; the
//! VM's TPM endorsement key is read (`testudo vm tpm-ek`) and enrolled (`testudo hub
//! enrollment add`); the VM boots with that fresh TPM state, brings up its network, registers
//! through DPS with TPM attestation, connects and reports its device properties. `testudo
//! deploy app` sets a signed deployment of `sensor-reader.wasm` into the `cloud-app` slot
//! (the module uploaded to the emulator's artifact store); the device fetches it, init runs
//! it in its sandbox, its telemetry reaches the hub and the twin reports it `running`.
//! Microsoft's official service SDK reads the twin and invokes `reboot`; the device answers,
//! stops in order and reboots; booted again with the same TPM state and disk, it reconnects
//! with the assignment it stored, without asking DPS again, and runs the deployed app again
//! from its data partition. No component is killed by its seccomp role
//! or restarted on the way (the image's kernel is older than this host's).
//!
//! Binds the emulator to 127.0.0.1:8883 and :443 (where QEMU's user network sends the guest's
//! connections to 10.0.2.2), serialised with the other tests that need 8883 by a lock file.
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

mod vm_device;

use std::time::Duration;

use vm_device::*;

/// Generous for TCG on a loaded 2-core machine: a boot to ready takes about a minute.
const BOOT: Duration = Duration::from_secs(900);

#[test]
fn the_gateway_provisions_itself_reports_and_reboots_from_the_cloud() {
    require_service_sdk();
    let _ports = lock_hub_ports();
    let rig = DeviceRig::build();
    let hub = rig.serve_hub();
    let ek = rig.tpm_ek();
    rig.enroll(&ek);

    // First boot: provisioning through DPS (TPM attestation), connection, reported properties.
    let mut vm = rig.boot();
    let reported_line = vm.wait_line("cloud: device properties reported", BOOT);
    let console = vm.console();
    assert!(
        console.contains("cloud: new DPS assignment: hub hub.testudo.dev, device gateway-0001"),
        "{console}"
    );
    assert!(console.contains("testudo: booting slot A"), "{console}");
    drop(reported_line);

    let reported = rig.service(&["twin", DEVICE]);
    assert_eq!(reported["deviceInformation"]["manufacturer"], "testudo");
    assert_eq!(reported["testudo"]["bootedSlot"], "A");
    assert!(
        reported["deviceInformation"]["swVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("0.1.0+")),
        "{reported}"
    );

    // A twin change deploys a signed WASM app into the running gateway.
    let deployed = rig.deploy("wasm-apps/sensor-reader.wasm", "1.0.0");
    assert!(deployed.contains("/testudo/artifacts/"), "{deployed}");
    vm.wait_line(
        "cloud-app: app slot: serial 1 passed its health check",
        BOOT,
    );
    let deadline = std::time::Instant::now() + BOOT;
    loop {
        let apps = &rig.service(&["twin", DEVICE])["apps"];
        if apps["cloud-app"]["runtimeStatus"] == "running"
            && apps["lastDesiredStatus"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("applied"))
            && !rig.app_telemetry("cloud-app").is_empty()
        {
            assert_eq!(apps["cloud-app"]["version"], "1.0.0", "{apps}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deployed app is not reported running with telemetry: {apps}\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let reboot = rig.service(&["invoke", DEVICE, "reboot"]);
    assert_eq!(reboot["status"], 200, "{reboot}");
    let exit = vm.wait_exit(Duration::from_secs(300));
    let console = vm.console();
    assert!(exit.success(), "QEMU ended with {exit}: {console}");
    // Every component, the WASM hosts included, ran from start to reboot within its sandbox
    // on the image's kernel: none was killed (a syscall outside its seccomp role) or restarted.
    assert!(!console.contains("killed by seccomp"), "{console}");
    assert!(!console.contains(": restarting in"), "{console}");
    assert!(
        console.contains("agent: power: reboot requested"),
        "{console}"
    );
    assert!(
        console.contains("testudo-init: reboot asked by agent"),
        "{console}"
    );

    // Second boot: same disk, same TPM state; the stored assignment, no new registration.
    let mut again = rig.boot();
    again.wait_line("cloud: device properties reported", BOOT);
    let console = again.console();
    assert!(
        console.contains("cloud: stored DPS assignment: hub hub.testudo.dev, device gateway-0001"),
        "{console}"
    );
    assert!(!console.contains("new DPS assignment"), "{console}");
    // The deployed app runs again, verified from the data partition.
    again.wait_line("cloud-app: started", BOOT);
    let console = again.console();
    assert!(!console.contains("cloud-app: app slot:"), "{console}");
    again.kill();
    drop(hub);
}
