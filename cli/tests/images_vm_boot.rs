//! Promise: the gateway example builds, boots under TCG through GRUB into slot A, brings up
//! the board's network link and reaches testudo-init's ready line; after the update bundle
//! is installed into slot B and the grubenv makes B primary on trial (as an install does), the
//! next boot runs slot B. testudo-init mounts the data partition itself, and the WASM hosts
//! run the image's precompiled apps (compiled for the board's CPU features, which QEMU's
//! default CPU model has).
//!
//! Needs the workspace's binaries next to `testudo` (as `cargo test --workspace` builds them)
//! or in the directories named by `TESTUDO_IMAGE_BIN_DIRS` (colon-separated).
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

mod vm_common;

use std::path::Path;

use vm_common::*;

fn boot(disk: &str, data_home: &Path, expect: &str) -> String {
    boot_until(disk, data_home, expect, 240)
}

#[test]
fn gateway_boots_slot_a_then_slot_b_after_installing_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data_home = root.join("data-home");
    let out = build_image(
        root,
        "system-config/examples/gateway.ncl",
        &["system-config/trust/azure-iot-roots.pem"],
        &data_home,
    );

    let disk = out.join("disk.img");
    let disk_s = disk.to_str().unwrap();
    // Boot until a WASM host says where its app's code came from (after the ready line).
    let console = boot(
        disk_s,
        &data_home,
        // Either app's host saying where its code came from (`vm run` reports the whole
        // line), or either app failing: then the assertions below show the console at once.
        r"app (sensor-reader|forwarder): code |testudo-init: (sensor-reader|forwarder): (exited|killed|failed|restarting|denied|launch failed)",
    );
    assert!(console.contains("testudo: booting slot A"), "{console}");
    assert!(console.contains("slot A, rootfs rootfs-a"), "{console}");
    // testudo-init (not the initramfs) mounted the data partition before the components.
    assert!(
        console.contains("testudo-init: data partition data on /dev/"),
        "{console}"
    );
    assert!(console.contains("testudo-init: ready:"), "{console}");
    // The board's network (QEMU's user network, static) came up before the components.
    assert!(
        console.contains("testudo-init: network eth0 10.0.2.15/24 via 10.0.2.2 up"),
        "{console}"
    );
    assert!(
        console.contains(": code precompiled /"),
        "the image's .cwasm was not used on the board's CPU: {console}"
    );
    assert!(!console.contains("not used"), "{console}");
    // Every component, the WASM hosts included, runs under a cgroup v2 memory limit.
    for component in ["storage", "sensor-reader", "forwarder"] {
        let started = format!("testudo-init: {component}: started");
        assert!(
            console
                .lines()
                .any(|l| l.contains(&started) && l.contains("memory.max=")),
            "{component} without memory.max: {console}"
        );
    }

    // A is the good slot; the updater marks it good at every boot (a slot that confirmed
    // before), so its counter is back to 0 or about to be: the rollback test checks that.
    let env = grubenv_of(disk_s);
    assert!(env.contains("A_OK=1"), "{env}");

    // Install the bundle into slot B: verify and extract with rauc, write the slot, then make
    // B primary and good-to-try in the grubenv (rauc's mark-active).
    let keyring = data_home.join("testudo/dev-keys/ca.pem");
    write_bundle_into_slot_b(disk_s, &out.join("update.raucb"), &keyring, root);
    set_grubenv(
        disk_s,
        root,
        &["ORDER=B A", "B_OK=1", "B_TRY=0", "TESTUDO_TRIAL=B"],
    );

    let console = boot_until_ready(disk_s, &data_home, 240);
    assert!(console.contains("testudo: booting slot B"), "{console}");
    assert!(console.contains("slot B, rootfs rootfs-b"), "{console}");
    // GRUB counted B's first try before booting it; B is on trial, so the updater waits for
    // the system to have run without a restart for a while before it confirms.
    let env = grubenv_of(disk_s);
    assert!(
        env.contains("B_TRY=1") && env.contains("ORDER=B A"),
        "{env}"
    );
}
