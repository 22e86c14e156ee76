//! `testudo-updater`: the device's updater component (see the crate docs). Init starts it with
//! the slot GRUB booted (`--booted-slot`); it confirms that slot or reboots a failing trial,
//! then stays up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use testudo_update_service::device::DeviceHost;
use testudo_update_service::{confirm_boot, HealthPolicy};

#[derive(Debug, Parser)]
#[command(
    name = "testudo-updater",
    about = "Confirms the booted slot when the system is healthy"
)]
struct Args {
    /// The slot GRUB booted (`A` or `B`; init passes it from `testudo.slot=`).
    #[arg(long)]
    booted_slot: String,
    /// The EFI system partition holding the grubenv.
    #[arg(long, default_value_t = testudo_plan::layout::partitions::node(testudo_plan::layout::partitions::ESP))]
    esp: String,
    /// How long every component must run without a restart before the slot is confirmed.
    #[arg(long, default_value_t = HealthPolicy::default().stable_for.as_millis() as u64)]
    stable_for_ms: u64,
    /// How long a slot on trial gets to become healthy before the device reboots.
    #[arg(long, default_value_t = HealthPolicy::default().confirm_within.as_millis() as u64)]
    confirm_within_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let policy = HealthPolicy {
        stable_for: Duration::from_millis(args.stable_for_ms),
        confirm_within: Duration::from_millis(args.confirm_within_ms),
    };
    let bootnames = testudo_plan::layout::partitions::ROOTFS_SLOTS
        .iter()
        .map(|(bootname, _)| bootname.to_string())
        .collect();
    let confirmed = DeviceHost::from_routes(&PathBuf::from(&args.esp), bootnames)
        .and_then(|mut host| confirm_boot(&mut host, &args.booted_slot, policy));
    if let Err(error) = confirmed {
        eprintln!("updater: {}", testudo_error_chain::error_chain(&error));
        return ExitCode::FAILURE;
    }
    // Confirmed, or a reboot is under way: stay up until init stops the component.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
