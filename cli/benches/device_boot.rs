//! The whole device's boot under TCG, stage by stage (a bench binary:
//! `cargo bench -p testudo --bench device_boot`).
//!
//! The development gateway (`gateway-dev.ncl`) is built once; the hub emulator runs on this
//! host with the development CA. Each of three boots is a new device: a copy of the disk as
//! built and a fresh TPM whose endorsement key is enrolled first, so every boot provisions
//! through DPS (TPM attestation). Stages are read off the console as its lines arrive:
//! QEMU start → kernel start (GRUB's `booting slot` line, right before the kernel loads) →
//! components ready (init's ready line) → provisioned (the agent's new DPS assignment) →
//! connected → first reported patch acknowledged. The anchor, in the same run, is time to
//! ready: what the image did before it had a network and an identity.
#![allow(clippy::unwrap_used)]

#[path = "common/timing.rs"]
mod timing;
#[path = "../tests/vm_device/mod.rs"]
mod vm_device;

use std::time::{Duration, Instant};

use timing::{median, seconds};
use vm_device::*;

/// Set (to anything) to print each boot's console, every line timed from components ready:
/// where the time after ready goes.
const CONSOLE_VAR: &str = "TESTUDO_BENCH_CONSOLE";

/// Boots measured.
const BOOTS: usize = 3;
/// The longest a boot may take to its last stage.
const BOOT: Duration = Duration::from_secs(900);

/// The stages, by the console line that ends each.
const STAGES: &[(&str, &str)] = &[
    ("kernel start", "testudo: booting slot"),
    ("components ready", "testudo-init: ready:"),
    ("provisioned (DPS, TPM)", "cloud: new DPS assignment"),
    ("connected", "cloud: connected to"),
    (
        "reported patch acknowledged",
        "cloud: device properties reported",
    ),
];

/// One boot of a new device: when each stage's line arrived, from QEMU's start.
fn boot_once(rig: &mut DeviceRig, label: &str) -> Vec<Duration> {
    rig.renew_device(label);
    let ek = rig.tpm_ek();
    rig.enroll(&ek);
    let mut vm = rig.boot();
    let last = STAGES[STAGES.len() - 1].1;
    vm.wait_line(last, BOOT);
    let at = |needle: &str| -> Duration {
        let seen: Instant = vm
            .seen(needle)
            .unwrap_or_else(|| panic!("no {needle:?} on the console:\n{}", vm.console()));
        seen.duration_since(vm.started)
    };
    let times = STAGES.iter().map(|(_, needle)| at(needle)).collect();
    if std::env::var_os(CONSOLE_VAR).is_some() {
        println!(
            "boot {label}, console timed from components ready:\n{}",
            vm.timed_console(STAGES[1].1)
        );
    }
    vm.kill();
    times
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("device_boot: bench");
        return;
    }
    require_service_sdk();
    let _ports = lock_hub_ports();
    let mut rig = DeviceRig::build();
    let _hub = rig.serve_hub();
    let boots: Vec<Vec<Duration>> = (0..BOOTS)
        .map(|boot| boot_once(&mut rig, &boot.to_string()))
        .collect();

    println!("device boot under TCG, {BOOTS} boots of a new device (fresh TPM, enrolled)");
    println!("  from QEMU start to       each boot                       median");
    for (index, (stage, _)) in STAGES.iter().enumerate() {
        let samples: Vec<Duration> = boots.iter().map(|times| times[index]).collect();
        let each: Vec<String> = samples.iter().map(|d| seconds(*d)).collect();
        println!(
            "  {stage:<28} {}   {}",
            each.join(" "),
            seconds(median(samples))
        );
    }
    let ready = median(boots.iter().map(|times| times[1]).collect());
    let after: Vec<Duration> = boots
        .iter()
        .map(|times| times[STAGES.len() - 1].saturating_sub(times[1]))
        .collect();
    let provisioned_connected: Vec<Duration> = boots
        .iter()
        .map(|times| times[3].saturating_sub(times[1]))
        .collect();
    println!(
        "anchor: time to ready {} (median); provisioning + connect after ready {} (median), \
         reported patch acknowledged after ready {} (median) = {:.2}x of time to ready",
        seconds(ready),
        seconds(median(provisioned_connected)),
        seconds(median(after.clone())),
        median(after).as_secs_f64() / ready.as_secs_f64()
    );
}
