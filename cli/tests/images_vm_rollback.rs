//! Promise: on the device, boot confirmation and rollback work by themselves. The updater
//! component confirms the slot GRUB booted once the system is healthy (the grubenv's `A_TRY`
//! back to 0); a slot on trial whose system never becomes healthy (here a bundle with a
//! component that crash-loops) is rebooted by the updater at every boot until GRUB has given
//! it `update.boot_tries` tries, then GRUB boots the previous slot, abandons the failed one
//! (`B_OK=0`), and the previous slot confirms again.
//!
//! Both images are the gateway example with 2 boot tries and a shorter health window, so the
//! test takes minutes, not a quarter of an hour, under TCG. Needs the workspace's binaries
//! (see `vm_common::bin_dirs`).
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

mod vm_common;

use std::path::Path;

use vm_common::*;

/// The gateway example as the test builds it: 2 boot tries; confirmed after 3 s of health; a
/// trial gets 40 s. `extra` is merged in (Nickel).
fn config(root: &Path, name: &str, extra: &str) -> String {
    let text = format!(
        "(import \"{gateway}\")\n& {{\n  update.boot_tries | force = 2,\n  components.updater.args = [\"--stable-for-ms\", \"3000\", \"--confirm-within-ms\", \"40000\"],\n{extra}}}\n",
        gateway = repo()
            .join("system-config/examples/gateway.ncl")
            .display()
    );
    let path = root.join(format!("{name}.ncl"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_bundle_that_never_becomes_healthy_is_rolled_back_by_the_device_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let data_home = tmp.path().join("data-home");
    let trust = ["system-config/trust/azure-iot-roots.pem"];
    let good_root = tmp.path().join("good");
    std::fs::create_dir_all(&good_root).unwrap();
    let good = build_image(
        &good_root,
        &config(tmp.path(), "good", ""),
        &trust,
        &data_home,
    );
    // The broken system: a component that exits at once (a log daemon with nothing to
    // provide gets no control socket) and is restarted forever.
    let broken_root = tmp.path().join("broken");
    std::fs::create_dir_all(&broken_root).unwrap();
    let broken_config = config(
        tmp.path(),
        "broken",
        "  components.broken = { kind = 'service, run = { binary = \"testudo-log\" }, limits = { memory_bytes = 8388608, cpu_percent = 5, restart = 'always } },\n",
    );
    let broken = build_image(&broken_root, &broken_config, &trust, &data_home);

    let disk = good.join("disk.img");
    let disk_s = disk.to_str().unwrap();

    // 1. Slot A boots and confirms itself.
    let console = boot_until(disk_s, &data_home, "updater: slot A confirmed good", 300);
    assert!(console.contains("testudo: booting slot A"), "{console}");
    assert!(
        console.contains("updater: slot A booted (try 1, confirmed before)"),
        "{console}"
    );
    let env = grubenv_of(disk_s);
    assert!(env.contains("A_OK=1\nA_TRY=0\n"), "A not confirmed: {env}");

    // 2. The broken bundle into slot B, activated as an update activates it (mark-active).
    let keyring = data_home.join("testudo/dev-keys/ca.pem");
    write_bundle_into_slot_b(disk_s, &broken.join("update.raucb"), &keyring, tmp.path());
    set_grubenv(
        disk_s,
        tmp.path(),
        &["ORDER=B A", "B_OK=1", "B_TRY=0", "TESTUDO_TRIAL=B"],
    );

    // 3. B gets its two tries; each time the updater gives up on it and reboots.
    for try_number in 1..=2 {
        let console = boot_until(
            disk_s,
            &data_home,
            "updater: slot B on trial is not healthy after 40s",
            300,
        );
        assert!(console.contains("testudo: booting slot B"), "{console}");
        assert!(
            console.contains(&format!(
                "updater: slot B booted (try {try_number}, on trial"
            )),
            "{console}"
        );
        // The reason names the crash-looping component.
        assert!(
            console.contains("not healthy after 40s (broken "),
            "{console}"
        );
        let env = grubenv_of(disk_s);
        assert!(env.contains(&format!("B_TRY={try_number}\n")), "{env}");
        assert!(env.contains("B_OK=1\n"), "{env}");
    }

    // 4. Its tries used up, GRUB boots A again and abandons B; A confirms.
    let console = boot_until(disk_s, &data_home, "updater: slot A confirmed good", 300);
    assert!(console.contains("testudo: booting slot A"), "{console}");
    let env = grubenv_of(disk_s);
    assert!(env.contains("B_OK=0\n"), "B not abandoned: {env}");
    assert!(
        env.contains("A_OK=1\nA_TRY=0\n"),
        "A not confirmed again: {env}"
    );

    // 5. And A stays the slot that boots.
    let console = boot_until(disk_s, &data_home, "updater: slot A booted", 300);
    assert!(console.contains("testudo: booting slot A"), "{console}");
}
