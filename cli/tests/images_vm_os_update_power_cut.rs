//! Promise: a power cut at any step of an OS update leaves a device that boots a good slot and
//! either completes the update or reports it failed. For each of the points below, on a new
//! device (a fresh copy of the disk, its own TPM and hub): the gateway (0.1.0) provisions
//! itself, `testudo deploy os` publishes 0.2.0 through the twin, and QEMU is killed (no
//! shutdown, no sync) when the console shows the point was reached; the device is then booted
//! again, as often as it reboots itself, until the twin reports the workflow's end: 700 with
//! slot B confirmed, or 255 with slot A confirmed. A point recovers when that end is reached
//! within the boots allowed and the slot booted last is confirmed good. The points, spread
//! over download, install, reboot and confirm:
//! 1. `download`: one second into the bundle's download;
//! 2. `install`: two seconds into verifying and writing slot B;
//! 3. `installed`: slot B written and made the next boot, before the updater's reboot;
//! 4. `reboot`: slot B's first boot, at the boot loader's choice;
//! 5. `confirm`: slot B booted on trial, before it is confirmed.
//!
//! The table of points and how each ended is printed; the test fails unless every point
//! recovered. Binds the emulator to 127.0.0.1:8883 and :443 (lock file shared with the other
//! hub tests). Needs the workspace's binaries (see `vm_common::bin_dirs`).
#![cfg(feature = "images")]
#![allow(clippy::unwrap_used)]

mod vm_device;

use std::time::Duration;

use vm_device::*;

/// Generous for TCG on a loaded 2-core machine: a boot to ready takes about a minute.
const BOOT: Duration = Duration::from_secs(900);

/// Most boots after the cut before the workflow must have ended (the boot loader gives a slot
/// on trial 3 tries; each may be cut short or rebooted by the updater).
const MAX_BOOTS: usize = 6;

/// A point to cut the power at: the console line that says it was reached, and how long after
/// it the power is cut.
struct CutPoint {
    name: &'static str,
    line: &'static str,
    after: Duration,
    /// Whether the line comes on the boot after the updater's reboot (slot B's first).
    after_reboot: bool,
}

const POINTS: [CutPoint; 5] = [
    CutPoint {
        name: "download",
        line: "manifest verified; downloading",
        after: Duration::from_secs(1),
        after_reboot: false,
    },
    CutPoint {
        name: "install",
        line: "verifying the staged bundle and installing it into slot B",
        after: Duration::from_secs(2),
        after_reboot: false,
    },
    CutPoint {
        name: "installed",
        line: "installed into slot B, reboot pending",
        after: Duration::ZERO,
        after_reboot: false,
    },
    CutPoint {
        name: "reboot",
        line: "testudo: booting slot B",
        after: Duration::ZERO,
        after_reboot: true,
    },
    CutPoint {
        name: "confirm",
        line: "updater: slot B booted (try 1, on trial",
        after: Duration::ZERO,
        after_reboot: true,
    },
];

/// How one point ended.
struct Outcome {
    /// The twin's `lastInstallResult.resultCode` at the end (700 or 0), if it ended.
    result_code: Option<i64>,
    /// Its `resultDetails`.
    detail: String,
    /// The slot booted last and whether it confirmed itself good.
    slot: String,
    confirmed: bool,
    boots: usize,
}

impl Outcome {
    fn recovered(&self) -> bool {
        self.confirmed
            && match self.result_code {
                Some(700) => self.slot == "B",
                Some(0) => self.slot == "A",
                _ => false,
            }
    }
}

#[test]
fn a_power_cut_at_any_step_of_an_os_update_leaves_a_good_slot_and_a_reported_end() {
    require_service_sdk();
    let _ports = lock_hub_ports();
    let mut rig = DeviceRig::build();
    let newer = rig.build_variant("newer", "version | force = \"0.2.0\",");
    let bundle = newer.join("update.raucb");
    let mut table = Vec::new();
    for point in &POINTS {
        let outcome = cut_and_recover(&mut rig, &bundle, point);
        table.push((point.name, outcome));
    }
    println!(
        "\n| power cut at | boots after | slot | confirmed | reported | recovered | details |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, outcome) in &table {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            outcome.boots,
            outcome.slot,
            outcome.confirmed,
            outcome
                .result_code
                .map_or("nothing".to_owned(), |code| code.to_string()),
            outcome.recovered(),
            outcome.detail
        );
    }
    let recovered = table.iter().filter(|(_, o)| o.recovered()).count();
    println!("recovered: {recovered} of {} points", table.len());
    assert_eq!(recovered, table.len(), "not every power cut recovered");
}

/// One point on a new device: update, cut, boot until the workflow ended.
fn cut_and_recover(rig: &mut DeviceRig, bundle: &std::path::Path, point: &CutPoint) -> Outcome {
    rig.renew_device(point.name);
    rig.hub_state = rig.disk.with_extension("hub");
    let hub = rig.serve_hub();
    let ek = rig.tpm_ek();
    rig.enroll(&ek);

    let mut vm = rig.boot();
    vm.wait_line("cloud: device properties reported", BOOT);
    rig.deploy_os(bundle);
    if point.after_reboot {
        let exit = vm.wait_exit(BOOT);
        assert!(exit.success(), "{}: {}", point.name, vm.console());
        vm = rig.boot();
    }
    vm.wait_line(point.line, BOOT);
    std::thread::sleep(point.after);
    vm.kill();

    let mut boots = 0;
    loop {
        boots += 1;
        let mut vm = rig.boot();
        let booted = vm.wait_line("testudo: booting slot ", BOOT);
        let slot = booted
            .rsplit("booting slot ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        // Until the VM reboots (by the updater, into the update or away from a slot that is
        // not healthy) or the slot confirmed itself and the twin reports the workflow's end.
        let confirmed_line = format!("updater: slot {slot} confirmed good");
        let deadline = std::time::Instant::now() + BOOT;
        while std::time::Instant::now() < deadline && !vm.exited() {
            if vm.seen(&confirmed_line).is_some() {
                let agent = &rig.service(&["twin", DEVICE])["deviceUpdate"]["agent"];
                let code = agent["lastInstallResult"]["resultCode"].as_i64();
                let ended = matches!(
                    (agent["state"].as_i64(), code),
                    (Some(0), Some(700)) | (Some(255), Some(0))
                );
                if ended {
                    let detail = agent["lastInstallResult"]["resultDetails"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    vm.kill();
                    drop(hub);
                    return Outcome {
                        result_code: code,
                        detail,
                        slot,
                        confirmed: true,
                        boots,
                    };
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let console = vm.console();
        vm.kill();
        if boots >= MAX_BOOTS {
            println!("{}: no end after {boots} boots:\n{console}", point.name);
            drop(hub);
            return Outcome {
                result_code: None,
                detail: String::new(),
                slot,
                confirmed: false,
                boots,
            };
        }
    }
}
