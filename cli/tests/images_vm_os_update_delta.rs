//! Promise: delta OS updates on the development gateway under QEMU, driven only through the
//! hub. `testudo deploy os --delta` offers delta bundles beside the full one (ADU's related
//! files):
//! 1. on the factory system (0.1.0 in slot A, no install record), a delta made for another
//!    base (0.1.1 -> 0.2.0) is downloaded, refused by the updater's base check before the
//!    other slot is written, and the full bundle is downloaded and installed instead: B boots
//!    0.2.0, is confirmed and reported 700;
//! 2. on B, a delta made for the running image (0.2.0 -> 0.3.0) is what is downloaded (not
//!    the full bundle): it is applied from B into A, A boots 0.3.0, is confirmed and reported
//!    700.
//!
//! No component is killed by its seccomp role on the way (the updater reads the running slot
//! to apply a patch).
//!
//! Binds the emulator to 127.0.0.1:8883 and :443, serialised with the other tests that need
//! them by a lock file. Needs the workspace's binaries (see `vm_common::bin_dirs`).
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

mod vm_device;

use std::time::Duration;

use vm_device::*;

/// Generous for TCG on a loaded 2-core machine: a boot to ready takes about a minute.
const BOOT: Duration = Duration::from_secs(900);

/// The reported agent has installed `version` with result 700.
fn applied(agent: &serde_json::Value, version: &str) -> bool {
    agent["state"] == 0
        && agent["installedUpdateId"]
            .as_str()
            .is_some_and(|id| id.contains(&format!("\"{version}\"")))
}

#[test]
fn a_delta_for_the_running_image_is_installed_and_one_for_another_falls_back_to_the_full_bundle() {
    require_service_sdk();
    let _ports = lock_hub_ports();
    let rig = DeviceRig::build();
    let other_base = rig.build_variant("other-base", "version | force = \"0.1.1\",");
    let v2 = rig.build_variant(
        "v2",
        &format!("version | force = \"0.2.0\",\n{QUICK_CONFIRM}"),
    );
    let v3 = rig.build_variant(
        "v3",
        &format!("version | force = \"0.3.0\",\n{QUICK_CONFIRM}"),
    );
    let deltas = rig.data_home.join("deltas");
    std::fs::create_dir_all(&deltas).unwrap();
    let wrong_base = deltas.join("0.1.1-to-0.2.0.raucb");
    rig.bundle_delta(
        &other_base.join("update.raucb"),
        &v2.join("update.raucb"),
        &wrong_base,
    );
    let right_base = deltas.join("0.2.0-to-0.3.0.raucb");
    let printed = rig.bundle_delta(
        &v2.join("update.raucb"),
        &v3.join("update.raucb"),
        &right_base,
    );
    assert!(printed.contains("delta 0.2.0 -> 0.3.0"), "{printed}");

    let hub = rig.serve_hub();
    let ek = rig.tpm_ek();
    rig.enroll(&ek);

    // 1. A delta for another base: tried, refused before B is written, full bundle instead.
    let mut vm = rig.boot();
    vm.wait_line("cloud: device properties reported", BOOT);
    let printed = rig.deploy_os_with_deltas(&v2.join("update.raucb"), &[&wrong_base]);
    assert!(printed.contains("offering delta"), "{printed}");
    let exit = vm.wait_exit(BOOT);
    let console = vm.console();
    assert!(exit.success(), "QEMU ended with {exit}: {console}");
    assert!(!console.contains("killed by seccomp"), "{console}");
    assert!(console.contains("downloading delta-"), "{console}");
    assert!(
        console.contains("the delta bundle did not install (bundle_content: delta base"),
        "{console}"
    );
    assert!(console.contains("downloading bundle ("), "{console}");
    assert!(console.contains("installed into slot B"), "{console}");
    let mut vm = rig.boot();
    vm.wait_line("updater: slot B confirmed good", BOOT);
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| applied(agent, "0.2.0"));
    assert_eq!(agent["lastInstallResult"]["resultCode"], 700, "{agent}");

    // 2. On B, a delta for the running image: only the delta is downloaded, applied into A.
    let full_v3 = std::fs::metadata(v3.join("update.raucb")).unwrap().len();
    let delta_v3 = std::fs::metadata(&right_base).unwrap().len();
    assert!(
        delta_v3 * 100 < full_v3,
        "a version-only change: delta {delta_v3} bytes vs full {full_v3}"
    );
    rig.deploy_os_with_deltas(&v3.join("update.raucb"), &[&right_base]);
    let exit = vm.wait_exit(BOOT);
    let console = vm.console();
    assert!(exit.success(), "QEMU ended with {exit}: {console}");
    assert!(!console.contains("killed by seccomp"), "{console}");
    assert!(console.contains("downloading delta-"), "{console}");
    assert!(!console.contains("downloading bundle ("), "{console}");
    assert!(!console.contains("did not install"), "{console}");
    assert!(console.contains("installed into slot A"), "{console}");
    let mut vm = rig.boot();
    vm.wait_line("updater: slot A confirmed good", BOOT);
    let agent = rig.wait_os_update_report(&vm, BOOT, |agent| applied(agent, "0.3.0"));
    assert_eq!(agent["lastInstallResult"]["resultCode"], 700, "{agent}");
    vm.kill();
    drop(hub);
}
