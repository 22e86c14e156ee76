//! Promise: an OS update driven only through the hub, the Azure Device Update way. The
//! development gateway (`gateway-dev.ncl`, version 0.1.0) provisions itself and connects;
//! `testudo deploy os` publishes updates as ADU's service does (a signed v5 manifest in the
//! desired `deviceUpdate`, the bundle in the emulator's artifact store), and Microsoft's
//! service SDK reads what the device reports:
//! 1. a bundle older than the running system (0.0.9) is refused before a byte is downloaded:
//!    `state` 255, `lastInstallResult` 0 (ADU's failure) with the downgrade step's extended result code, and
//!    the other slot is not written;
//! 2. a newer bundle (0.2.0) is acknowledged, reported in progress (`state` 6), downloaded
//!    into the data partition, verified and installed into slot B by the updater component,
//!    which reboots; GRUB boots B on trial, the updater confirms it, and the device reports
//!    `state` 0, 700 and `installedUpdateId` 0.2.0 — and boots B from then on by itself.
//! 3. (then, on B) a bundle in RAUC's plain format (0.3.0: a detached signature
//!    over the whole payload) is installed into A the same way and reported 700.
//! 4. (a second device) an update whose system never becomes healthy (a component that
//!    crash-loops): installed into B and booted on trial, the updater gives up on B at every
//!    boot until GRUB has given it its tries, A boots again by itself, and the device
//!    reports `state` 255 with the rolled-back step's extended result code, still running
//!    0.1.0.
//!
//! No component is killed by its seccomp role on the way, and at the reboot every component
//! ends on init's SIGTERM (none is killed after the grace period).
//!
//! Binds the emulator to 127.0.0.1:8883 and :443, serialised with the other tests that need
//! them by a lock file. Needs the workspace's binaries (see `vm_common::bin_dirs`).
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

mod vm_device;

use std::time::Duration;

use testudo_os_update::result::FailedStep;
use vm_device::*;

/// Generous for TCG on a loaded 2-core machine: a boot to ready takes about a minute.
const BOOT: Duration = Duration::from_secs(900);

#[test]
fn a_twin_change_updates_the_gateway_from_a_to_b_and_a_downgrade_is_refused() {
    require_service_sdk();
    let _ports = lock_hub_ports();
    let rig = DeviceRig::build();
    let newer = rig.build_variant(
        "newer",
        &format!("version | force = \"0.2.0\",\n{QUICK_CONFIRM}"),
    );
    let older = rig.build_variant("older", "version | force = \"0.0.9\",");
    let plain = rig.build_variant(
        "plain",
        &format!(
            "version | force = \"0.3.0\",\nupdate.bundle_format | force = 'plain,\n{QUICK_CONFIRM}"
        ),
    );
    let hub = rig.serve_hub();
    let ek = rig.tpm_ek();
    rig.enroll(&ek);

    let mut vm = rig.boot();
    vm.wait_line("cloud: device properties reported", BOOT);
    // Before any update the device reports itself idle, with its ADU properties.
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| agent["state"] == 0);
    assert_eq!(
        agent["compatPropertyNames"], "manufacturer,model",
        "{agent}"
    );
    assert_eq!(
        agent["deviceProperties"]["manufacturer"], "testudo",
        "{agent}"
    );
    let env_before = grubenv_of(rig.disk.to_str().unwrap());

    // 1. A downgrade: refused by the updater when the workflow is staged.
    let printed = rig.deploy_os(&older.join("update.raucb"));
    assert!(printed.contains("/testudo/artifacts/"), "{printed}");
    let downgrade = FailedStep::Downgrade.extended_result_code();
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| agent["state"] == 255);
    assert_eq!(
        (
            &agent["lastInstallResult"]["resultCode"],
            &agent["lastInstallResult"]["extendedResultCode"]
        ),
        (&0.into(), &downgrade.into()),
        "{agent}\n{}",
        vm.console()
    );
    let console = vm.console();
    assert!(!console.contains("installing it into slot"), "{console}");

    // 2. The newer bundle: downloaded, installed into B, rebooted into, confirmed, reported.
    rig.deploy_os(&newer.join("update.raucb"));
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| agent["state"] == 6);
    assert!(agent["workflow"]["id"].is_string(), "{agent}");
    let exit = vm.wait_exit(BOOT);
    let console = vm.console();
    assert!(exit.success(), "QEMU ended with {exit}: {console}");
    assert!(!console.contains("killed by seccomp"), "{console}");
    assert!(
        console.contains("testudo-init: reboot asked by updater"),
        "{console}"
    );
    // Every component, the WASM hosts too, ends on init's SIGTERM: none waits out the
    // grace period to be killed.
    assert!(
        !console.contains("killed after the grace period"),
        "{console}"
    );
    let env = grubenv_of(rig.disk.to_str().unwrap());
    assert_ne!(env, env_before);
    assert!(
        env.contains("ORDER=B A\n"),
        "B is not the slot to boot: {env}"
    );

    let mut vm = rig.boot();
    vm.wait_line("updater: slot B confirmed good", BOOT);
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| agent["state"] == 0);
    assert_eq!(agent["lastInstallResult"]["resultCode"], 700, "{agent}");
    let installed: serde_json::Value =
        serde_json::from_str(agent["installedUpdateId"].as_str().unwrap()).unwrap();
    assert_eq!(installed["version"], "0.2.0", "{agent}");
    let console = vm.console();
    assert!(console.contains("testudo: booting slot B"), "{console}");
    assert!(!console.contains("killed by seccomp"), "{console}");
    let reported = rig.service(&["twin", DEVICE]);
    assert!(
        reported["deviceInformation"]["swVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("0.2.0+")),
        "{reported}"
    );
    let env = grubenv_of(rig.disk.to_str().unwrap());
    assert!(env.contains("B_OK=1\nB_TRY=0\n"), "B not confirmed: {env}");
    vm.kill();

    // 3. From then on B boots by itself.
    let mut vm = rig.boot();
    vm.wait_line("updater: slot B booted", BOOT);
    assert!(vm.console().contains("testudo: booting slot B"));
    vm.kill();

    // 4. A bundle in RAUC's plain format (a detached CMS signature over the whole payload,
    //    what `rauc bundle` makes by default) installs too: B to A.
    let plain_bundle = plain.join("update.raucb");
    let keyring = rig.data_home.join("testudo/dev-keys/ca.pem");
    let info = testudo_ok(
        &[
            "bundle",
            "info",
            plain_bundle.to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
        ],
        &rig.data_home,
    );
    assert!(info.contains("Bundle format: plain"), "{info}");
    let mut vm = rig.boot();
    vm.wait_line("cloud: device properties reported", BOOT);
    rig.deploy_os(&plain_bundle);
    let exit = vm.wait_exit(BOOT);
    let console = vm.console();
    assert!(exit.success(), "QEMU ended with {exit}: {console}");
    assert!(!console.contains("killed by seccomp"), "{console}");
    assert!(console.contains("installed into slot A"), "{console}");
    let mut vm = rig.boot();
    vm.wait_line("updater: slot A confirmed good", BOOT);
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| {
        agent["state"] == 0
            && agent["installedUpdateId"]
                .as_str()
                .is_some_and(|id| id.contains("0.3.0"))
    });
    assert_eq!(agent["lastInstallResult"]["resultCode"], 700, "{agent}");
    vm.kill();
    drop(hub);
}

/// Two boot tries and a 40 s trial window, so a slot that never becomes healthy is given up in
/// minutes under TCG.
const QUICK_TRIAL: &str = "update.boot_tries | force = 2,\ncomponents.updater.args = [\"--stable-for-ms\", \"3000\", \"--confirm-within-ms\", \"40000\"],";

#[test]
fn an_update_that_never_becomes_healthy_is_rolled_back_and_reported_failed() {
    require_service_sdk();
    let _ports = lock_hub_ports();
    let rig = DeviceRig::build_with(QUICK_TRIAL);
    // The broken system: a component that exits at once (a log daemon with nothing to
    // provide) and is restarted forever.
    let broken = rig.build_variant(
        "broken",
        &format!(
            "version | force = \"0.2.0\",\n{QUICK_TRIAL}\ncomponents.broken = {{ kind = 'service, run = {{ binary = \"testudo-log\" }}, limits = {{ memory_bytes = 8388608, cpu_percent = 5, restart = 'always }} }},"
        ),
    );
    let hub = rig.serve_hub();
    let ek = rig.tpm_ek();
    rig.enroll(&ek);

    let mut vm = rig.boot();
    vm.wait_line("updater: slot A confirmed good", BOOT);
    vm.wait_line("cloud: device properties reported", BOOT);
    rig.deploy_os(&broken.join("update.raucb"));
    let exit = vm.wait_exit(BOOT);
    let console = vm.console();
    assert!(exit.success(), "QEMU ended with {exit}: {console}");
    assert!(console.contains("installed into slot B"), "{console}");

    // B on trial, twice; each time the updater gives up on it and reboots.
    for try_number in 1..=2 {
        let mut vm = rig.boot();
        vm.wait_line("updater: slot B on trial is not healthy after 40s", BOOT);
        let exit = vm.wait_exit(BOOT);
        let console = vm.console();
        assert!(exit.success(), "QEMU ended with {exit}: {console}");
        assert!(console.contains("testudo: booting slot B"), "{console}");
        assert!(
            console.contains(&format!(
                "updater: slot B booted (try {try_number}, on trial"
            )),
            "{console}"
        );
    }

    // A again, by itself; the device reports the update failed, rolled back.
    let mut vm = rig.boot();
    vm.wait_line("updater: slot A confirmed good", BOOT);
    let rolled_back = FailedStep::RolledBack.extended_result_code();
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| agent["state"] == 255);
    assert_eq!(
        (
            &agent["lastInstallResult"]["resultCode"],
            &agent["lastInstallResult"]["extendedResultCode"]
        ),
        (&0.into(), &rolled_back.into()),
        "{agent}\n{}",
        vm.console()
    );
    let console = vm.console();
    assert!(console.contains("testudo: booting slot A"), "{console}");
    assert!(!console.contains("killed by seccomp"), "{console}");
    let reported = rig.service(&["twin", DEVICE]);
    assert!(
        reported["deviceInformation"]["swVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("0.1.0+")),
        "{reported}"
    );
    let env = grubenv_of(rig.disk.to_str().unwrap());
    assert!(env.contains("B_OK=0\n"), "B not abandoned: {env}");
    vm.kill();
    drop(hub);
}
