//! Promise: on the device, boot confirmation and rollback work by themselves. The updater
//! component confirms the slot GRUB booted once the system is healthy (the grubenv's `A_TRY`
//! back to 0); a slot on trial whose system never becomes healthy (here a bundle with a
//! component that crash-loops) is rebooted by the updater at every boot until GRUB has given
//! it `update.boot_tries` tries, then GRUB boots the previous slot, abandons the failed one
//! (`B_OK=0`), and the previous slot confirms again.
//!
//! The steps and what each boot must show are the VM scenario `rollback`
//! (`testudo_images::vm_scenario`, run here through `testudo vm scenario rollback`), which the
//! Nix check `vm-rollback` runs too: one implementation, two runners. Both images come from
//! `images/scenarios/rollback-{good,broken}.ncl` (2 boot tries, a shorter health window), so
//! the test takes minutes, not a quarter of an hour, under TCG. Needs the workspace's binaries
//! (see `vm_common::bin_dirs`).
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

mod vm_common;

use vm_common::*;

#[test]
fn a_bundle_that_never_becomes_healthy_is_rolled_back_by_the_device_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let data_home = tmp.path().join("data-home");
    let trust = ["system-config/trust/azure-iot-roots.pem"];
    let build = |name: &str| {
        let root = tmp.path().join(name);
        std::fs::create_dir_all(&root).unwrap();
        build_image(
            &root,
            &format!("images/scenarios/rollback-{name}.ncl"),
            &trust,
            &data_home,
        )
    };
    let good = build("good");
    let broken = build("broken");
    let keyring = data_home.join("testudo/dev-keys/ca.pem");
    let work = tmp.path().join("work");
    let good_disk = good.join("disk.img");
    let broken_bundle = broken.join("update.raucb");
    let out = testudo(
        &[
            "vm",
            "scenario",
            "rollback",
            "--good-disk",
            good_disk.to_str().unwrap(),
            "--broken-bundle",
            broken_bundle.to_str().unwrap(),
            "--keyring",
            keyring.to_str().unwrap(),
            "--work",
            work.to_str().unwrap(),
        ],
        &data_home,
    );
    let console = String::from_utf8_lossy(&out.stdout);
    let steps = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{steps}\n{console}");
    // Every step passed, in order (the scenario stops at the first that does not).
    let passed: Vec<&str> = steps
        .lines()
        .filter_map(|line| line.strip_prefix("scenario rollback: "))
        .collect();
    assert_eq!(
        passed,
        [
            "slot A booted and confirmed itself",
            "the broken bundle is in slot B, primary on trial",
            "slot B try 1: found unhealthy (broken), rebooted",
            "slot B try 2: found unhealthy (broken), rebooted",
            "GRUB fell back to slot A, abandoned B; A confirmed again",
            "slot A stays the slot that boots",
            "passed",
        ],
        "{steps}"
    );
    // The good image itself was not written: the scenario works on a copy.
    let env = grubenv_of(good_disk.to_str().unwrap());
    assert!(
        env.contains("B_OK=0\n") && env.contains("ORDER=A B"),
        "{env}"
    );
}
